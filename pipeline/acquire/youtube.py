"""What yt-dlp needs for YouTube in 2026, from config, and what this node has of it.

yt-dlp solves YouTube's JS challenges with an external runtime (deno, shipped by the `deno`
package) and the EJS solver scripts (the `yt-dlp-ejs` package of `yt-dlp[default]`); without
them only the JS-less client is used and formats go missing. PO tokens come from a provider
plugin (bgutil) or are given statically; player clients are tried in a configured order;
curl_cffi impersonates a browser where yt-dlp asks for it (YouTube subtitles) or everywhere.

`runtime_report` builds a YoutubeDL from the project's own params and reads what it found:
it runs `<runtime> --version` but makes no network request. It uses yt-dlp's private
attributes (`_js_runtimes`, `_jsc_director`, `_pot_director`): there is no public API.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from pipeline.acquire.config import YouTubeConfig

# extractor -> the only extractor-arg keys the project ever sets (see ytdlp_options.ALLOWED_EXTRACTOR_ARGS)
EXTRACTOR_ARG_KEYS = {
    "youtube": frozenset({"player_client", "po_token", "visitor_data", "player_skip", "skip"}),
    "youtubepot-bgutilhttp": frozenset({"base_url"}),
    "youtubepot-bgutilscript": frozenset({"server_home"}),
}
BGUTIL_MODULES = {"bgutil_http": "yt_dlp_plugins.extractor.getpot_bgutil_http",
                  "bgutil_script": "yt_dlp_plugins.extractor.getpot_bgutil_script"}


@functools.lru_cache(maxsize=8)
def _deno_from_package() -> str | None:
    try:
        import deno

        return deno.find_deno_bin()
    except (ImportError, FileNotFoundError):
        return None


def js_runtime_path(cfg: YouTubeConfig) -> str | None:
    """The configured executable, else deno from the `deno` package; None = yt-dlp searches."""
    if cfg.js_runtime_path:
        return str(Path(cfg.js_runtime_path).expanduser())
    if cfg.js_runtime == "deno":
        return _deno_from_package()
    return None


def js_runtimes_param(cfg: YouTubeConfig) -> dict[str, dict[str, str]]:
    """yt-dlp's `js_runtimes`: {} disables all; never None (yt-dlp rejects it)."""
    if cfg.js_runtime == "none":
        return {}
    path = js_runtime_path(cfg)
    return {cfg.js_runtime: {"path": path} if path else {}}


def extractor_args(cfg: YouTubeConfig) -> dict[str, dict[str, list[str]]]:
    """yt-dlp's `extractor_args` (every value a list of strings) for clients, PO tokens, providers."""
    youtube: dict[str, list[str]] = {}
    if cfg.player_clients:
        youtube["player_client"] = list(cfg.player_clients)
    if cfg.po_tokens:
        youtube["po_token"] = list(cfg.po_tokens)
    if cfg.visitor_data:  # the tokens are bound to it: the webpage must not bring another one
        youtube["visitor_data"] = [cfg.visitor_data]
        youtube["player_skip"] = ["webpage", "configs"]
    if cfg.skip_translated_subs:
        youtube["skip"] = ["translated_subs"]
    args: dict[str, dict[str, list[str]]] = {"youtube": youtube} if youtube else {}
    if cfg.pot_provider == "bgutil_http":
        args["youtubepot-bgutilhttp"] = {"base_url": [cfg.pot_base_url.rstrip("/")]}
    elif cfg.pot_provider == "bgutil_script":
        args["youtubepot-bgutilscript"] = {"server_home": [str(Path(cfg.pot_server_home or "").expanduser())]}
    return args


def impersonate_target(cfg: YouTubeConfig) -> Any:
    """yt-dlp's `impersonate` (an ImpersonateTarget, never a string), or None."""
    if not cfg.impersonate:
        return None
    from yt_dlp.networking.impersonate import ImpersonateTarget

    return ImpersonateTarget() if cfg.impersonate == "any" else ImpersonateTarget.from_str(cfg.impersonate)


def exempt_url_prefixes(cfg: YouTubeConfig) -> tuple[str, ...]:
    """Requests that are not the origin's: the PO-token provider's own server (an installed
    bgutil plugin pings its default address even when no provider is configured)."""
    return (cfg.pot_base_url.rstrip("/") + "/",)


def plugin_installed(provider: str) -> bool:
    module = BGUTIL_MODULES.get(provider)
    try:
        return bool(module) and importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def runtime_report(params: dict[str, Any]) -> dict[str, Any]:
    """What a YoutubeDL built from `params` finds: yt-dlp, JS runtime, EJS scripts, PO-token
    providers, impersonation. Offline: runs the runtime's `--version`, sends no request."""
    import yt_dlp
    from yt_dlp.networking.impersonate import ImpersonateTarget

    out: dict[str, Any] = {"yt_dlp": yt_dlp.version.__version__}
    # no cookie file: YoutubeDL writes its jar back on close, and the YouTube extractor adds consent cookies
    quiet = {k: v for k, v in params.items() if k not in ("logger", "cookiefile")}
    quiet.update(quiet=True, no_warnings=True, logger=_Silent())
    with yt_dlp.YoutubeDL(quiet) as ydl:
        runtimes = {}
        for name, runtime in ydl._js_runtimes.items():
            info = runtime.info if runtime is not None else None
            runtimes[name] = None if info is None else {"path": info.path, "version": info.version,
                                                        "supported": bool(info.supported)}
        out["js_runtimes"] = runtimes
        ie = ydl.get_info_extractor("Youtube")
        ie.initialize()  # sets cookies up; no request
        solvers = {}
        for key, provider in ie._jsc_director.providers.items():
            if not provider.is_available():
                continue
            try:
                lib, core = provider._lib_script, provider._core_script
                solvers[key] = {"lib": f"{lib.source.value} {lib.version}", "core": f"{core.source.value} {core.version}"}
            except Exception as exc:  # noqa: BLE001 - yt-dlp raises its own rejection types
                solvers[key] = {"error": str(exc)}
        out["ejs_solvers"] = solvers
        from yt_dlp.dependencies import yt_dlp_ejs

        out["yt_dlp_ejs"] = getattr(yt_dlp_ejs, "version", None) if yt_dlp_ejs else None
        out["pot_providers"] = {key: {"name": p.PROVIDER_NAME, "version": getattr(p, "PROVIDER_VERSION", None)}
                                for key, p in ie._pot_director.providers.items()}
        out["request_handlers"] = sorted(ydl._request_director.handlers)
        out["impersonation"] = bool(ydl._impersonate_target_available(ImpersonateTarget()))
    return out


class _Silent:
    def debug(self, msg: str) -> None:
        pass

    info = warning = error = debug


def solver_ready(report: dict[str, Any]) -> str | None:
    """The first JS challenge solver with a runtime and both scripts, or None."""
    return next((key for key, s in report.get("ejs_solvers", {}).items() if "error" not in s), None)


def summary_line(report: dict[str, Any]) -> str:
    """One log line: yt-dlp, the runtime and its version, EJS, impersonation."""
    runtimes = ", ".join(f"{n} {r['version']}" + ("" if r["supported"] else " (unsupported)") if r else f"{n} missing"
                         for n, r in report.get("js_runtimes", {}).items()) or "none"
    solver = solver_ready(report)
    return (f"yt-dlp {report['yt_dlp']}; JS runtime {runtimes}; EJS {report.get('yt_dlp_ejs') or 'missing'}"
            f" (challenge solver: {solver or 'none'}); impersonation "
            f"{'available' if report.get('impersonation') else 'unavailable'}; PO-token providers "
            f"{', '.join(p['name'] for p in report.get('pot_providers', {}).values()) or 'none'}")
