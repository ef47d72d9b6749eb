"""`curate doctor`: what this node has for fetching from YouTube, and whether that is full or degraded.

Every check looks at what the fetch workers will really use: a YoutubeDL built from the
job's own params (JS runtime, EJS scripts, PO-token plugins, impersonation), the ffmpeg
yt-dlp merges with, each identity's cookies file and proxy, the PO-token server. `fail`
degrades fetching (formats missing, an identity unusable); `warn` is worth knowing but
leaves it full. Network use: a GET of the bgutil server's /ping and a TCP connect to each
proxy, both to addresses from the config; never YouTube.
"""
from __future__ import annotations

import http.cookiejar
import json
import socket
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.acquire import youtube
from pipeline.acquire.config import FetchConfig, IdentityConfig
from pipeline.acquire.limiter import LimiterSpec
from pipeline.acquire.ytdlp_facts import clients_needing_token
from pipeline.acquire.ytdlp_options import build_params, ffmpeg_location


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str  # ok | warn | fail
    detail: str


@dataclass
class Diagnosis:
    checks: list[Check]
    report: dict[str, Any]

    @property
    def full(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    def render(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = [f"  [{c.status:>4}] {c.name:<{width}}  {c.detail}" for c in self.checks]
        reasons = [f"{c.name}: {c.detail}" for c in self.checks if c.status == "fail"]
        verdict = "YouTube fetching: FULL" if self.full else "YouTube fetching: DEGRADED, because\n" + "\n".join(
            f"  - {r}" for r in reasons)
        return "\n".join(["fetch doctor", *lines, verdict])


def diagnose(cfg: FetchConfig, cache_dir: Path, timeout_s: float = 3.0) -> Diagnosis:
    """Run every check for the fetch config `cfg`."""
    params = build_params(cfg, cache_dir, "doctor")
    report = youtube.runtime_report(params)
    yt = cfg.youtube
    checks = [Check("yt-dlp", "ok", report["yt_dlp"]), _runtime(yt, report), _ejs(report), _ffmpeg(),
              _impersonation(yt, report), _clients(cfg, report), _po_tokens(yt, report, timeout_s)]
    for identity in cfg.identity_list():
        checks += [_cookies(identity), _proxy(identity, timeout_s)]
    budgets = ", ".join(f"{b.name}: {_per_h(b.requests_per_hour)} requests, {_per_h(b.downloads_per_hour)} downloads, "
                        f"{_per_h(b.subtitle_requests_per_hour)} subtitles per hour" for b in LimiterSpec.from_config(cfg).identities)
    checks.append(Check("limits", "ok", f"shared by every fetch worker of the cluster: {budgets}"))
    return Diagnosis(checks, report)


def _per_h(value: float | None) -> str:
    return "unlimited" if value is None else f"{value:g}"


def _runtime(yt, report: dict[str, Any]) -> Check:
    if yt.js_runtime == "none":
        return Check("JS runtime", "fail", "disabled (youtube.js_runtime: none): YouTube's challenges go unsolved, "
                                           "only the JS-less client is used and formats go missing")
    info = report["js_runtimes"].get(yt.js_runtime)
    where = youtube.js_runtime_path(yt) or "searched in the venv and PATH"
    if info is None:
        return Check("JS runtime", "fail", f"{yt.js_runtime} not found ({where}): pip install the project's "
                                           "dependencies (the `deno` package) or set youtube.js_runtime_path")
    if not info["supported"]:
        return Check("JS runtime", "fail", f"{yt.js_runtime} {info['version']} at {info['path']} is older than "
                                           "yt-dlp supports")
    return Check("JS runtime", "ok", f"{yt.js_runtime} {info['version']} at {info['path']}")


def _ejs(report: dict[str, Any]) -> Check:
    solver = youtube.solver_ready(report)
    if solver:
        s = report["ejs_solvers"][solver]
        return Check("EJS scripts", "ok", f"yt-dlp-ejs {report.get('yt_dlp_ejs')}: lib {s['lib']}, core {s['core']} "
                                          f"(solver {solver})")
    errors = "; ".join(f"{k}: {v['error']}" for k, v in report.get("ejs_solvers", {}).items()) or "no runtime to run them"
    return Check("EJS scripts", "fail", f"no challenge solver ({errors}); yt-dlp-ejs "
                                        f"{report.get('yt_dlp_ejs') or 'not installed'}")


def _ffmpeg() -> Check:
    path = ffmpeg_location()
    if not path:
        return Check("ffmpeg", "fail", "none: separate video and audio streams cannot be merged (YouTube then "
                                       "offers at most 360p)")
    try:
        first = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=10).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        return Check("ffmpeg", "fail", f"{path} does not run: {exc}")
    return Check("ffmpeg", "ok", f"{' '.join(first.split()[:3])} at {path}")


def _impersonation(yt, report: dict[str, Any]) -> Check:
    if report.get("impersonation"):
        import curl_cffi

        mode = f"every request as {yt.impersonate}" if yt.impersonate else "where yt-dlp asks (YouTube subtitles)"
        return Check("impersonation", "ok", f"curl_cffi {curl_cffi.__version__}: {mode}")
    if yt.impersonate:
        return Check("impersonation", "fail", f"youtube.impersonate={yt.impersonate} but curl_cffi is not usable")
    return Check("impersonation", "warn", "curl_cffi not usable: YouTube subtitle requests go out as plain HTTP "
                                          "(they are 429'd first)")


def _clients(cfg: FetchConfig, report: dict[str, Any]) -> Check:
    clients, default = _effective_clients(cfg)
    need = [c for c in clients if c in clients_needing_token()]
    has_pot = bool(cfg.youtube.po_tokens) or cfg.youtube.pot_provider != "none"
    detail = f"{', '.join(clients)}{' (yt-dlp defaults)' if default else ''}"
    if need and not has_pot:
        if len(need) == len(clients):
            return Check("player clients", "fail", f"{detail}: every one needs a PO token and none is configured")
        return Check("player clients", "warn", f"{detail}: {', '.join(need)} formats need a PO token (none "
                                               "configured) and are skipped; the others are used")
    return Check("player clients", "ok", detail)


def _effective_clients(cfg: FetchConfig) -> tuple[list[str], bool]:
    if cfg.youtube.player_clients:
        return [c for c in cfg.youtube.player_clients if not c.startswith("-")], False
    from yt_dlp.extractor.youtube import YoutubeIE

    authed = any(i.cookies_file for i in cfg.identity_list())
    return list(YoutubeIE._DEFAULT_AUTHED_CLIENTS if authed else YoutubeIE._DEFAULT_CLIENTS), True


def _po_tokens(yt, report: dict[str, Any], timeout_s: float) -> Check:
    provider = yt.pot_provider
    if provider == "none":
        if yt.po_tokens:
            bound = "bound to visitor_data" if yt.visitor_data else "bound to the cookies' session (no visitor_data)"
            clients = sorted({t.split("+", 1)[0] for t in yt.po_tokens})
            return Check("PO tokens", "ok", f"{len(yt.po_tokens)} static ({', '.join(clients)}), {bound}; they expire")
        plugins = ", ".join(p["name"] for p in report.get("pot_providers", {}).values())
        return Check("PO tokens", "warn", "no source configured" + (f" (installed plugins: {plugins})" if plugins else ""))
    if not youtube.plugin_installed(provider):
        return Check("PO tokens", "fail", f"pot_provider={provider} but the bgutil plugin is not installed "
                                          "(pip install '.[pot]')")
    if provider == "bgutil_script":
        home = Path(yt.pot_server_home or "").expanduser()
        script = home / "build" / "generate_once.js"
        if not script.is_file():
            return Check("PO tokens", "fail", f"bgutil script {script} not found (build the provider's server there)")
        return Check("PO tokens", "ok", f"bgutil script {script}")
    url = yt.pot_base_url.rstrip("/") + "/ping"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - an http(s) URL from the config
            version = json.loads(resp.read() or b"{}").get("version", "?")
    except (OSError, ValueError) as exc:
        return Check("PO tokens", "fail", f"bgutil server not reachable at {url}: {exc}")
    return Check("PO tokens", "ok", f"bgutil server {version} at {yt.pot_base_url}")


def _cookies(identity: IdentityConfig) -> Check:
    name = f"cookies [{identity.name}]"
    if not identity.cookies_file:
        return Check(name, "ok", "none: a guest session")
    path = Path(identity.cookies_file).expanduser()
    jar = http.cookiejar.MozillaCookieJar(str(path))
    try:
        jar.load(ignore_discard=True, ignore_expires=True)
    except (OSError, http.cookiejar.LoadError) as exc:
        return Check(name, "fail", f"{path} cannot be read as a Netscape cookies file: {exc}")
    youtube_cookies = [c for c in jar if c.domain.lstrip(".").endswith(("youtube.com", "google.com"))]
    if not youtube_cookies:
        return Check(name, "warn", f"{path}: {len(jar)} cookies, none for youtube.com: a guest session on YouTube")
    return Check(name, "ok", f"{path}: {len(youtube_cookies)} YouTube/Google cookies (values not shown)")


def _proxy(identity: IdentityConfig, timeout_s: float) -> Check:
    name = f"proxy [{identity.name}]"
    if not identity.proxy:
        return Check(name, "ok", "none: this machine's own address")
    parts = urllib.parse.urlsplit(identity.proxy)
    shown = f"{parts.scheme}://{'***@' if parts.username else ''}{parts.hostname}:{parts.port}"
    default_port = {"http": 80, "https": 443}.get(parts.scheme, 1080)
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=timeout_s):
            pass
    except OSError as exc:
        return Check(name, "fail", f"{shown} not reachable: {exc}")
    return Check(name, "ok", f"{shown} reachable")
