"""Which of the README's vLLM server flags an OpenAI-compatible server lacks, asked before any work.

A missing flag otherwise shows only on the first replies (a 400, a `frames_dropped` failure, cached
tokens reading 0). The probe asks the server a few cheap questions, each in the form the backend
itself will send (`build_payload`):

- is it vLLM (`GET /version`, or `/v1/models` entries `owned_by: vllm`)? Other servers (hosted APIs,
  SGLang, the tests' scripted server) get no flag checks, and the report says why;
- does it serve the configured model (`/v1/models`)?
- `--enable-prompt-tokens-details`: a short text request sent twice; its usage must carry
  `prompt_tokens_details` (cached and visual tokens). Accounting only: a warning;
- `--trust-request-mm-kwargs`: a text request carrying `media_io_kwargs` (vLLM refuses it with a 400
  before reading anything else). Without it every video request fails: with `frame_times` on, a
  failure;
- `--media-io-kwargs '{"video": {"num_frames": -1}}'` and the frames the backend's own requests keep:
  a video of 35 tiny frames (vLLM's default keeps 32), sent as the server's default reads it and as
  the backend sends it; the server's count of its visual tokens is compared with the exact count
  (`visual.server_visual_tokens`, wrappers tokenized by the server's /tokenize), or, from a server
  without token details, its prompt's growth from 33 to 35 frames with the exact growth. Frames the
  backend's requests lose make every timed caption wrong: a failure; a server default that only
  other clients meet: a warning.

`fail` checks stop a job before its first video (`check_servers`) and a backend at setup; `curate
doctor` prints them all.
"""
from __future__ import annotations

import io
import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from synth.backends.config import BackendConfig
from synth.backends.types import ChatRequest
from synth.backends.visual import family_of, server_visual_tokens, video_input

log = logging.getLogger(__name__)

PROBE_FRAMES = 35  # more than vLLM's default 32, odd: losing any frame loses a two-frame patch
PROBE_SIZE = (32, 32)  # one visual token per Qwen3-VL patch: the wrappers are most of the count
RECOGNISE_TIMEOUT_S = 10.0  # an unreachable server is reported (warn), not waited for
NUM_FRAMES_FLAG = "--media-io-kwargs '{\"video\": {\"num_frames\": -1}}'"


@dataclass
class ServerCheck:
    """One line of a server report: ok | warn | fail | skip."""

    name: str
    status: str
    detail: str


@dataclass
class ServerReport:
    """What a server said about the flags a backend needs."""

    role: str
    url: str
    model: str
    engine: str | None = None  # "vLLM 0.32.0" when recognised
    checks: list[ServerCheck] = field(default_factory=list)

    @property
    def failures(self) -> list[ServerCheck]:
        return [c for c in self.checks if c.status == "fail"]

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(ServerCheck(name, status, detail))

    def render(self) -> str:
        width = max((len(c.name) for c in self.checks), default=0)
        head = f"model server ({self.role}): {self.model} at {self.url}" + (f", {self.engine}" if self.engine else "")
        return "\n".join([head, *(f"  [{c.status:>4}] {c.name:<{width}}  {c.detail}" for c in self.checks)])

    def error(self) -> str:
        """The message a run stops with when a check failed."""
        return (f"{self.role} server {self.url} ({self.model}) is missing what the backend needs: "
                + "; ".join(f"{c.name}: {c.detail}" for c in self.failures)
                + " (README, Model backends: the vllm-serve block; `curate doctor JOB` re-checks)")


class _Http:
    """Small synchronous JSON client over urllib (the probe runs once, before any async work)."""

    def __init__(self, cfg: BackendConfig, timeout_s: float) -> None:
        self.base = cfg.openai.base_url.rstrip("/")
        self.root = self.base[:-3] if self.base.endswith("/v1") else self.base
        self.timeout_s = timeout_s
        self.headers = {"Content-Type": "application/json", **cfg.openai.extra_headers}
        env = cfg.openai.api_key_env
        if env and os.environ.get(env):
            self.headers["Authorization"] = f"Bearer {os.environ[env]}"

    def call(self, url: str, body: dict[str, Any] | None = None, timeout_s: float | None = None) -> tuple[int, Any]:
        """(status, parsed JSON or text); status 0 when the server could not be reached."""
        req = urllib.request.Request(url, json.dumps(body).encode() if body is not None else None, self.headers,
                                     method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s or self.timeout_s) as r:
                status, text = r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode("utf-8", "replace")
        except (OSError, ValueError) as e:
            return 0, f"{type(e).__name__}: {e}"
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text


def _tiny_jpeg(i: int, size: tuple[int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, ((37 * i) % 256, (91 * i) % 256, 120)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def probe_frames(n: int = PROBE_FRAMES, size: tuple[int, int] = PROBE_SIZE) -> list:
    """`n` tiny frames at irregular times, as a sampler gives them."""
    from pipeline.records import Frame

    return [Frame(1.5 * i + 0.25 * (i % 3), _tiny_jpeg(i, size), size[0], size[1], digest=f"probe{i}")
            for i in range(n)]


def recognise(http: _Http) -> tuple[str | None, str]:
    """("vLLM <version>", "") for a vLLM server, else (None, why not)."""
    status, body = http.call(http.root + "/version", timeout_s=RECOGNISE_TIMEOUT_S)
    if status == 0:
        return None, f"not reachable ({body})"
    if status == 200 and isinstance(body, dict) and "version" in body:
        return f"vLLM {body['version']}", ""
    status, models = http.call(http.base + "/models")
    owners = sorted({m.get("owned_by") for m in (models.get("data") or [])
                     if isinstance(m, dict)} - {None}) if status == 200 and isinstance(models, dict) else []
    if "vllm" in owners:
        return "vLLM", ""
    return None, (f"not a vLLM server (GET /version: no vLLM version; /v1/models owned_by: "
                  f"{', '.join(owners) or 'none'}): the flag checks are vLLM's")


def recognised(cfg: BackendConfig) -> str | None:
    """"vLLM <version>" when the backend's server is vLLM, else None (one GET, no model work)."""
    return recognise(_Http(cfg, RECOGNISE_TIMEOUT_S))[0]


def _chat(http: _Http, body: dict[str, Any]) -> tuple[int, Any]:
    return http.call(http.base + "/chat/completions", {**body, "max_tokens": 1, "temperature": 0.0})


def _details(reply: Any) -> dict | None:
    usage = reply.get("usage") if isinstance(reply, dict) else None
    return (usage or {}).get("prompt_tokens_details")


def token_counter(http: _Http, model: str) -> Callable[[str], int]:
    """The served model's token count of a text, by the server's own /tokenize (memoised)."""
    memo: dict[str, int] = {}

    def count(text: str) -> int:
        if text not in memo:
            status, body = http.call(http.root + "/tokenize", {"model": model, "prompt": text,
                                                               "add_special_tokens": False})
            if status != 200 or not isinstance(body, dict):
                raise RuntimeError(f"/tokenize answered {status}: {str(body)[:200]}")
            memo[text] = int(body["count"])
        return memo[text]

    return count


def read_times(video_kw: dict[str, Any], n: int) -> list[float]:
    """The times (s) vLLM reads a frame list's frames at, given a request's media_io_kwargs["video"]:
    its `frames_indices` / `fps` when it sends them, else 1 fps."""
    idx, fps = video_kw.get("frames_indices"), float(video_kw.get("fps") or 1.0)
    return [i / fps for i in idx] if idx and len(idx) == n else [float(i) for i in range(n)]


def _frames_check(report: ServerReport, http: _Http, cfg: BackendConfig, trusted: bool) -> None:
    """The frames a 35-frame video keeps: the server's count of its visual tokens against the exact
    count, or, from a server that reports none, its prompt's growth from 33 to 35 frames."""
    from synth.backends.openai_backend import build_payload

    family = family_of(cfg.model, cfg.model_family)
    frames = probe_frames()
    count = token_counter(http, cfg.model)

    def payload(fs: list, own: bool) -> dict[str, Any]:
        body = build_payload(cfg, ChatRequest(key="probe/frames", system=None, prompt="Describe the video.",
                                              frames=fs, max_tokens=1))
        if not own:  # what the server does by itself
            body.pop("media_io_kwargs", None)
        # the marker lists the frames' times: a constant instead, so two prompts differ by their video alone
        body["messages"][-1]["content"][0] = {"type": "text", "text": "Video:"}
        return body

    def expected(body: dict[str, Any], fs: list) -> int:
        video_kw = (body.get("media_io_kwargs") or {}).get("video") or {}
        return server_visual_tokens([(f.width, f.height) for f in fs], family, True, read_times(video_kw, len(fs)),
                                    count)

    def measure(own: bool) -> tuple[int, int, str]:
        """(the server's count, the exact expected count, what was counted)."""
        body = payload(frames, own)
        status, reply = _chat(http, body)
        if status != 200:
            raise RuntimeError(f"a {len(frames)}-frame video was refused: HTTP {status}: {str(reply)[:200]}")
        mm = (_details(reply) or {}).get("multimodal_tokens") or {}
        if mm:
            return sum(int(v or 0) for v in mm.values()), expected(body, frames), "visual tokens"
        fewer = payload(frames[:-2], own)  # no token details: two frames fewer, all else equal
        status, smaller = _chat(http, fewer)
        if status != 200:
            raise RuntimeError(f"a {len(frames) - 2}-frame video was refused: HTTP {status}: {str(smaller)[:200]}")
        return (int(reply["usage"]["prompt_tokens"]) - int(smaller["usage"]["prompt_tokens"]),
                expected(body, frames) - expected(fewer, frames[:-2]), "prompt tokens of its last 2 frames")

    def kept(got: int, want: int, how: str) -> bool:
        return got >= want if how == "visual tokens" else got == want

    own = payload(frames, True)
    video_kw = (own.get("media_io_kwargs") or {}).get("video") or {}
    sends_own = bool(video_kw) and trusted
    keeps_all = sends_own and video_kw.get("num_frames") == -1
    got, want, how = measure(own=False)
    if kept(got, want, how):
        report.add(NUM_FRAMES_FLAG, "ok", f"{len(frames)} frames sent, all kept (server {got} {how}, expected {want})")
    else:
        report.add(NUM_FRAMES_FLAG, "warn" if keeps_all else "fail", (
            f"missing: the server keeps fewer than the {len(frames)} frames of a frame list (server {got} {how}, "
            f"{want} with every frame)" + (
                "; the backend's own requests ask for every frame (frame_times), so this only affects other clients"
                if keeps_all else "; every video the backend sends loses frames, and the times of its captions "
                "with them")))
    if not sends_own:
        return
    got, want, how = measure(own=True)
    if kept(got, want, how):
        report.add("frames the backend sends", "ok", f"{len(frames)} frames with their real times, all kept "
                   f"(server {got} {how}, expected {want})")
    else:
        report.add("frames the backend sends", "fail", (
            f"{len(frames)} frames as the backend sends them: server {got} {how}, {want} expected: it drops or "
            "resamples frames"))


def probe(cfg: BackendConfig, role: str = "teacher", timeout_s: float = 60.0) -> ServerReport:
    """Ask the server of an openai-kind backend which of the README's flags it runs with."""
    http = _Http(cfg, timeout_s)
    report = ServerReport(role, cfg.openai.base_url, cfg.model)
    engine, why = recognise(http)
    if engine is None:
        report.add("server flags", "skip" if "not reachable" not in why else "warn", why)
        return report
    report.engine = engine
    status, models = http.call(http.base + "/models")
    served = [m.get("id") for m in (models.get("data") or []) if isinstance(m, dict)] if isinstance(models, dict) else []
    if served and cfg.model not in served:
        report.add("model", "fail", f"the server serves {', '.join(map(str, served))}, not {cfg.model} (the "
                   "backend's `model` is the name sent; vLLM: --served-model-name)")
        return report
    report.add("model", "ok", f"served ({engine})")
    text = {"model": cfg.model, "messages": [{"role": "user", "content": "Repeat after me: " + "one two three " * 12}]}
    replies = [_chat(http, text) for _ in range(2)]
    if any(s != 200 for s, _ in replies):
        s, body = next(r for r in replies if r[0] != 200)
        report.add("text request", "fail", f"HTTP {s}: {str(body)[:200]}")
        return report
    details = _details(replies[1][1])
    if details is None:
        report.add("--enable-prompt-tokens-details", "warn", "missing: no prompt_tokens_details in usage, so cached "
                   "tokens read 0 and visual tokens are the project's estimate")
    else:
        report.add("--enable-prompt-tokens-details", "ok",
                   f"cached_tokens {int(details.get('cached_tokens') or 0)} on a repeated "
                   f"{replies[1][1]['usage'].get('prompt_tokens')}-token prompt")
    if not video_input(cfg.model, cfg.model_family, cfg.video_input):
        report.add("video checks", "skip", "frames go to this model as images (video_input): no video flags needed")
        return report
    s, body = _chat(http, {**text, "media_io_kwargs": {"video": {"num_frames": -1}}})
    trusted = s == 200
    if trusted:
        report.add("--trust-request-mm-kwargs", "ok", "a request may carry its frames' times (media_io_kwargs)")
    elif "media_io_kwargs" in str(body):
        report.add("--trust-request-mm-kwargs", "fail" if cfg.openai.frame_times else "warn", (
            "missing: the server refuses a request's media_io_kwargs, " + (
                "so every video request would fail (frame_times is on)" if cfg.openai.frame_times else
                "so frames are read at 1 fps: the model is told they are 1 s apart (frame_times is off)")))
    else:
        report.add("--trust-request-mm-kwargs", "fail", f"HTTP {s}: {str(body)[:200]}")
        return report
    try:
        _frames_check(report, http, cfg if trusted else _without_times(cfg), trusted)
    except RuntimeError as e:  # a refused video or /tokenize: nothing is concluded about the frames
        report.add("video frames kept", "fail", f"not checked: {e}")
    return report


def _without_times(cfg: BackendConfig) -> BackendConfig:
    return cfg.model_copy(update={"openai": cfg.openai.model_copy(update={"frame_times": False})})


_CHECKED: dict[tuple, ServerReport] = {}


def checked(cfg: BackendConfig, role: str) -> ServerReport:
    """`probe` once per process for the same server, model and request settings."""
    key = (cfg.openai.base_url, cfg.model, cfg.model_family, cfg.video_input, cfg.openai.frame_times,
           json.dumps(cfg.openai.extra_body, sort_keys=True, default=str))
    if key not in _CHECKED:
        _CHECKED[key] = probe(cfg, role)
    return _CHECKED[key]


def served_roles(roles: dict[str, BackendConfig | None]) -> dict[str, BackendConfig]:
    """The roles whose backend talks to a server (kind openai)."""
    return {role: cfg for role, cfg in roles.items() if cfg is not None and cfg.kind == "openai"}


def check_servers(roles: dict[str, BackendConfig | None], echo: Callable[[str], None] = log.info) -> list[ServerReport]:
    """Probe each openai-kind role's server; print the reports; raise when one lacks what results need."""
    reports = [checked(cfg, role) for role, cfg in served_roles(roles).items() if cfg.openai.check_server]
    for r in reports:
        echo(r.render())
    failed = [r for r in reports if r.failures]
    if failed:
        raise RuntimeError(" | ".join(r.error() for r in failed))
    return reports




def config_for(url: str, model: str | None = None) -> BackendConfig:
    """An openai-kind backend for a server URL (`curate doctor --server`): `model`, else the first the
    server lists."""
    cfg = BackendConfig(kind="openai", model=model or "?", openai={"base_url": url})
    if model is None:
        http = _Http(cfg, RECOGNISE_TIMEOUT_S)
        status, body = http.call(http.base + "/models")
        ids = [m.get("id") for m in (body.get("data") or [])] if status == 200 and isinstance(body, dict) else []
        if ids:
            cfg = cfg.model_copy(update={"model": ids[0]})
    return cfg
