"""OpenAI-compatible chat backend: bounded concurrency, timeouts, retries with backoff.

Works against vLLM / SGLang / LMDeploy servers and hosted APIs. Every request ends as a
`ChatResult`: transient failures (429, 5xx, timeouts, connection errors, malformed bodies)
are retried with exponential backoff and jitter (Retry-After honoured, capped at
backoff_max_s); 401/403 and other 4xx are final at once. The API key is read from the
environment at setup(), never from the config.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Sequence

import aiohttp

from synth.backends.config import BackendConfig
from synth.backends.messages import request_to_messages, video_io_kwargs
from synth.backends.parsing import parse_json_reply
from synth.backends.visual import family_of, video_input, visual_tokens
from synth.backends.types import ChatRequest, ChatResult, ErrorReason

log = logging.getLogger(__name__)


@dataclass
class _Attempt:
    """What one HTTP attempt produced: a result, or a (possibly retryable) failure."""

    result: ChatResult | None = None
    reason: str | None = None
    message: str = ""
    retry_after_s: float | None = None
    details: bool = True  # the server reported prompt_tokens_details (vLLM: --enable-prompt-tokens-details)


def prefix_key(req: ChatRequest) -> tuple:
    """What a request's prompt starts with: its system prompt and its frames (by content)."""
    import hashlib

    return (req.system or "", tuple(f.digest or hashlib.sha1(bytes(f.image)).hexdigest()[:16] for f in req.frames))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def sends_video(cfg: BackendConfig, req: ChatRequest) -> bool:
    return len(req.frames) >= 2 and video_input(cfg.model, cfg.model_family, cfg.video_input)


def build_payload(cfg: BackendConfig, req: ChatRequest) -> dict[str, Any]:
    """The JSON body of one /chat/completions request."""
    body: dict[str, Any] = {
        "model": cfg.model,
        "messages": request_to_messages(req, as_video=sends_video(cfg, req)),
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
    }
    if req.n != 1:
        body["n"] = req.n
    if req.seed is not None:
        body["seed"] = req.seed
    if req.json_schema:  # the prompt's own schema: bounded, so a reply sized by max_tokens closes
        body["response_format"] = {"type": "json_schema", "json_schema": req.json_schema}
    elif req.json_mode:
        body["response_format"] = {"type": "json_object"}
    if cfg.openai.frame_times and sends_video(cfg, req):
        body["media_io_kwargs"] = {"video": video_io_kwargs(req.frames)}
    body.update(cfg.openai.extra_body)
    return body


def reported_visual_tokens(details: dict[str, Any]) -> int | None:
    """The server's own count of the prompt's visual tokens: vLLM's `multimodal_tokens` (per
    modality: the placeholder tokens of the frames, Qwen3-VL's rendered timestamps included),
    or `image_tokens` where a server names it so; None when it reports neither."""
    mm = details.get("multimodal_tokens")
    if isinstance(mm, dict) and mm:
        return sum(int(v or 0) for v in mm.values())
    if details.get("image_tokens") is not None:
        return int(details["image_tokens"])
    return None


def _parse_ok_body(key: str, text: str, attempts: int, json_mode: bool = False, visual: int = 0,
                   expected: int | None = None) -> _Attempt:
    """Turn a 200 body into a result. Retryable: a body that is not the OpenAI shape, a
    reply with no text, and (JSON mode) a reply that is not JSON: a sampled model often
    answers well the second time, and a missing caption or QA reply must not pass as final.
    Final: a server whose own visual-token count is below the project's count of the frames
    sent saw fewer or smaller frames than were sent (it dropped or resampled them): `expected` is the
    server's exact count (wrappers included, `visual.server_visual_tokens`) where it is known, else the
    frames' own tokens (`visual`), a lower bound."""
    try:
        data = json.loads(text)
        choices = data["choices"]
        if not isinstance(choices, list):
            raise TypeError("choices is not a list")
    except (ValueError, KeyError, TypeError) as e:
        return _Attempt(reason=ErrorReason.malformed_response,
                        message=f"unparseable response body ({e}): {text[:200]!r}")
    # what the server saw comes first: a reply to frames it dropped is wrong, whatever it says
    usage = data.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    reported = reported_visual_tokens(details)
    floor = expected if expected is not None else visual
    if reported is not None and floor and reported < floor:
        return _Attempt(reason=ErrorReason.frames_dropped, message=(
            f"the server counted {reported} visual tokens for frames that are {floor} by the model's own "
            "counting (synth/backends/visual.py): it dropped, resampled or shrank frames. vLLM: start it with "
            "--media-io-kwargs '{\"video\": {\"num_frames\": -1}}' and --trust-request-mm-kwargs (README, "
            "Model backends); a server that resamples videos itself takes video_input: images"))
    texts = [((c or {}).get("message") or {}).get("content") or "" for c in choices]
    if not texts or not any(t.strip() for t in texts):
        return _Attempt(reason=ErrorReason.empty_response, message=f"200 with no choices or empty content: "
                                                                    f"{text[:200]!r}")
    if json_mode and not any(parse_json_reply(t)[1] is None for t in texts):
        cut = any((c or {}).get("finish_reason") == "length" for c in choices)
        return _Attempt(reason=ErrorReason.malformed_response, message=(
            "JSON was asked for, the reply was cut at max_tokens before its JSON closed (finish_reason length; "
            "a constrained decoder cannot finish it either: raise the round's max_tokens)" if cut else
            "JSON was asked for, the reply is not JSON") + f": {texts[0][:200]!r}")
    return _Attempt(result=ChatResult(
        key=key, texts=texts, ok=True,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        # the server's own count when it reports one; else the model family's own counting
        visual_tokens=reported if reported is not None else visual,
        cached_tokens=int(details.get("cached_tokens") or 0),  # automatic prefix caching (vLLM, SGLang, OpenAI)
        attempts=attempts), details=bool(details))


def _classify_status(status: int, body: str, retry_after: str | None) -> _Attempt:
    """Map a non-200 status to a failure reason (retryable or final)."""
    snippet = body[:300]
    if status == 429:
        return _Attempt(reason=ErrorReason.rate_limited, message=f"HTTP 429: {snippet}",
                        retry_after_s=parse_retry_after(retry_after))
    if status == 408:
        return _Attempt(reason=ErrorReason.timeout, message=f"HTTP 408: {snippet}")
    if status >= 500:
        return _Attempt(reason=ErrorReason.server_error, message=f"HTTP {status}: {snippet}",
                        retry_after_s=parse_retry_after(retry_after))
    if status in (401, 403):
        return _Attempt(reason=ErrorReason.auth, message=f"HTTP {status}: {snippet}")
    if "media_io_kwargs" in body:
        snippet += (" [the server refuses the frames' times: start vLLM with --trust-request-mm-kwargs, or set "
                    "openai.frame_times: false and the model is told the frames are 1 s apart]")
    return _Attempt(reason=ErrorReason.bad_request, message=f"HTTP {status}: {snippet}")


class OpenAIBackend:
    """Chat completions over HTTP with aiohttp; `generate` is synchronous for callers."""

    def __init__(self, cfg: BackendConfig, *, rng: random.Random | None = None) -> None:
        if cfg.kind != "openai":
            raise ValueError(f"OpenAIBackend needs kind='openai', got {cfg.kind!r}")
        self.cfg = cfg
        self.name = cfg.model
        self.url = cfg.openai.base_url.rstrip("/") + "/chat/completions"
        self._headers: dict[str, str] | None = None
        self._rng = rng or random.Random()
        self.server_notes: set[str] = set()  # server flags found missing, each logged once
        self.engine: str | None = None  # "vLLM <version>" once the server check recognised one
        self._text_tokens: dict[str, int] = {}  # the served tokenizer's length of a text (vLLM /tokenize)

    def setup(self) -> None:
        """Read the API key from the environment (fails loudly when it is missing)."""
        headers = {"Content-Type": "application/json", **self.cfg.openai.extra_headers}
        env = self.cfg.openai.api_key_env
        if env:
            key = os.environ.get(env)
            if not key:
                raise RuntimeError(
                    f"environment variable {env} (openai.api_key_env) is not set; export the "
                    "API key there (in Ray, pass it through runtime_env env_vars), or set "
                    "api_key_env: null for a server without auth")
            headers["Authorization"] = f"Bearer {key}"
        self._headers = headers
        from synth.backends.server_check import checked, recognised

        if self.cfg.openai.check_server:  # the README's server flags, asked once per process
            report = checked(self.cfg, "backend")
            if report.failures:
                raise RuntimeError(report.error())
            self.engine = report.engine
        else:  # still: is it vLLM (whose exact visual-token count the replies are checked against)?
            self.engine = recognised(self.cfg)

    def close(self) -> None:
        self._headers = None

    def backoff_s(self, retry: int, retry_after_s: float | None = None) -> float:
        """Delay before retry number `retry` (1-based): exponential with jitter, or Retry-After."""
        o = self.cfg.openai
        if retry_after_s is not None:
            return min(o.backoff_max_s, retry_after_s)
        base = min(o.backoff_max_s, o.backoff_base_s * (2 ** (retry - 1)))
        return base * (0.5 + 0.5 * self._rng.random())

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """Answer all requests (same order). Safe inside Ray actors and worker threads."""
        if self._headers is None:
            self.setup()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.agenerate(requests))
        # Called from inside a running loop (async actor): run our loop on a side thread.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self.agenerate(requests)).result()

    async def agenerate(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """Async form of `generate` for callers that already run an event loop."""
        if self._headers is None:
            self.setup()
        sem = asyncio.Semaphore(self.cfg.openai.concurrency)
        connector = aiohttp.TCPConnector(limit=self.cfg.openai.concurrency)
        results: dict[int, ChatResult] = {}
        async with aiohttp.ClientSession(connector=connector) as session:
            for wave in self._waves(requests):  # prefix leaders first: the server caches their frames
                for i, res in zip(wave, await asyncio.gather(*(self._one(session, sem, requests[i]) for i in wave))):
                    results[i] = res
        return [results[i] for i in range(len(requests))]

    def _waves(self, requests: Sequence[ChatRequest]) -> list[list[int]]:
        """Request positions in the order to send them: with `warm_prefix`, the first of each group
        of requests that share their frames and system prompt goes first, the others after it, so a
        server with automatic prefix caching prefills those frames once, not once per request."""
        if not self.cfg.openai.warm_prefix:
            return [list(range(len(requests)))]
        groups: dict[tuple, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(prefix_key(req), []).append(i)
        leaders = [g[0] for key, g in groups.items() if key[1] and len(g) > 1]
        rest = [i for i in range(len(requests)) if i not in set(leaders)]
        return [w for w in (leaders, rest) if w]

    async def _one(self, session: aiohttp.ClientSession, sem: asyncio.Semaphore,
                   req: ChatRequest) -> ChatResult:
        """One request with its retries; the semaphore is held only while on the wire."""
        t0 = time.monotonic()
        payload = build_payload(self.cfg, req)
        sizes, family = [(f.width, f.height) for f in req.frames], family_of(self.cfg.model, self.cfg.model_family)
        visual = visual_tokens(sizes, family, sends_video(self.cfg, req))
        expected = await self._server_count(session, payload, sizes, family) if visual and sends_video(self.cfg, req) \
            else None
        max_attempts = self.cfg.openai.max_retries + 1
        last = _Attempt()
        for attempt in range(1, max_attempts + 1):
            async with sem:
                last = await self._attempt(session, req.key, payload, attempt, req.json_mode, visual, expected)
            if last.result is not None:
                last.result.latency_s = time.monotonic() - t0
                return last.result
            if last.reason not in ErrorReason.TRANSIENT or attempt == max_attempts:
                break
            delay = self.backoff_s(attempt, last.retry_after_s)
            log.debug("retry %s of %s after %s (%.2fs)", attempt, req.key, last.reason, delay)
            await asyncio.sleep(delay)
        return ChatResult.failure(req.key, last.reason or ErrorReason.network, last.message,
                                  attempts=attempt, latency_s=time.monotonic() - t0)

    async def _server_count(self, session: aiohttp.ClientSession, payload: dict[str, Any],
                            sizes: list[tuple[int, int]], family: str) -> int | None:
        """The exact visual-token count a vLLM server reports for this video (each patch's rendered
        time tokenized by the server's /tokenize, memoised); None where it cannot be known."""
        from synth.backends.server_check import read_times
        from synth.backends.visual import patch_wrappers, server_visual_tokens

        if not self.engine or not self.engine.startswith("vLLM"):
            return None
        times = read_times((payload.get("media_io_kwargs") or {}).get("video") or {}, len(sizes))
        root = self.cfg.openai.base_url.rstrip("/").removesuffix("/v1")
        for text in set(patch_wrappers(times, family)) - set(self._text_tokens):  # type: ignore[arg-type]
            try:
                async with session.post(root + "/tokenize", headers=self._headers,
                                        json={"model": self.cfg.model, "prompt": text, "add_special_tokens": False},
                                        timeout=aiohttp.ClientTimeout(total=self.cfg.openai.timeout_s)) as resp:
                    if resp.status != 200:
                        return None
                    self._text_tokens[text] = int((await resp.json())["count"])
            except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, ValueError):
                return None  # the lower bound (the frames' own tokens) still holds
        return server_visual_tokens(sizes, family, True, times, self._text_tokens.__getitem__)  # type: ignore[arg-type]

    def _note(self, flag: str, why: str) -> None:
        """Tell the user once per backend which server flag is missing, and what it costs."""
        if flag not in self.server_notes:
            self.server_notes.add(flag)
            log.warning("%s at %s: %s (vLLM: start the server with %s; README, Model backends)",
                        self.name, self.url, why, flag)

    async def _attempt(self, session: aiohttp.ClientSession, key: str,
                       payload: dict[str, Any], attempt: int, json_mode: bool = False, visual: int = 0,
                       expected: int | None = None) -> _Attempt:
        timeout = aiohttp.ClientTimeout(total=self.cfg.openai.timeout_s)
        try:
            async with session.post(self.url, json=payload, headers=self._headers,
                                    timeout=timeout) as resp:
                body = await resp.text(errors="replace")
                if resp.status == 200:
                    got = _parse_ok_body(key, body, attempt, json_mode, visual, expected)
                    if got.result is not None and not got.details:
                        self._note("--enable-prompt-tokens-details",
                                   "the server reports no prompt_tokens_details: cached tokens read 0 and visual "
                                   "tokens are the project's estimate, not the server's count")
                    return got
                return _classify_status(resp.status, body, resp.headers.get("Retry-After"))
        except asyncio.TimeoutError:
            return _Attempt(reason=ErrorReason.timeout,
                            message=f"no answer within {self.cfg.openai.timeout_s}s")
        except aiohttp.ClientError as e:
            return _Attempt(reason=ErrorReason.network, message=f"{type(e).__name__}: {e}")
