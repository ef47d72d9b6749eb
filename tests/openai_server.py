"""A scripted OpenAI-compatible /v1/chat/completions server on 127.0.0.1 for tests.

Answers are scripted per prompt (the last text part of the last user message): each
prompt has a list of actions consumed in order (the last one repeats). Every request is
recorded with its headers and JSON body, and the server tracks the most requests it had
in flight at once, so tests can check bounded concurrency.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """A normal 200 completion; `contents` gives one choice each (for n > 1)."""

    content: str | list[str] = "ok"
    prompt_tokens: int = 11
    completion_tokens: int = 7
    delay_s: float = 0.0


@dataclass
class Status:
    """A non-200 answer (429, 500, 401, 400 ...) with an optional Retry-After."""

    code: int
    retry_after: str | None = None
    body: str = '{"error": {"message": "scripted"}}'


@dataclass
class Raw:
    """A 200 whose body is sent verbatim (e.g. malformed JSON)."""

    body: str


@dataclass
class Hang:
    """Sleep longer than the client's timeout, then answer normally."""

    seconds: float
    then: Reply = field(default_factory=Reply)


Action = Reply | Status | Raw | Hang


@dataclass
class Received:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    prompt: str


def prompt_of(body: dict[str, Any]) -> str:
    """The last text of the last user message (what scripts are keyed on)."""
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    if not users:
        return ""
    content = users[-1]["content"]
    if isinstance(content, str):
        return content
    texts = [p["text"] for p in content if p.get("type") == "text"]
    return texts[-1] if texts else ""


class ScriptedOpenAIServer:
    """Threaded HTTP server; use `start()` / `stop()` (or as a context manager)."""

    def __init__(self, script: dict[str, list[Action]] | None = None,
                 default: Action | None = None) -> None:
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.default = default or Reply()
        self.received: list[Received] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "ScriptedOpenAIServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "ScriptedOpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- behaviour -----------------------------------------------------------------
    def requests_for(self, prompt: str) -> list[Received]:
        return [r for r in self.received if r.prompt == prompt]

    def _next_action(self, prompt: str) -> Action:
        with self._lock:
            actions = self.script.get(prompt)
            if not actions:
                return self.default
            return actions.pop(0) if len(actions) > 1 else actions[0]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            length = int(h.headers.get("Content-Length") or 0)
            raw = h.rfile.read(length)
            if h.path != "/v1/chat/completions":
                self._send(h, 404, '{"error": "not found"}')
                return
            body = json.loads(raw)
            prompt = prompt_of(body)
            with self._lock:
                self.received.append(Received(h.path, dict(h.headers.items()), body, prompt))
            self._act(h, self._next_action(prompt), body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer
        finally:
            with self._lock:
                self.in_flight -= 1

    def _act(self, h: BaseHTTPRequestHandler, action: Action, body: dict[str, Any]) -> None:
        if isinstance(action, Hang):
            time.sleep(action.seconds)
            action = action.then
        if isinstance(action, Status):
            extra = {"Retry-After": action.retry_after} if action.retry_after else {}
            self._send(h, action.code, action.body, extra)
        elif isinstance(action, Raw):
            self._send(h, 200, action.body)
        else:
            if action.delay_s:
                time.sleep(action.delay_s)
            contents = action.content if isinstance(action.content, list) else [action.content]
            resp = {
                "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model"),
                "choices": [{"index": i, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": c}}
                            for i, c in enumerate(contents)],
                "usage": {"prompt_tokens": action.prompt_tokens,
                          "completion_tokens": action.completion_tokens * len(contents),
                          "total_tokens": action.prompt_tokens
                          + action.completion_tokens * len(contents)},
            }
            self._send(h, 200, json.dumps(resp))

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, code: int, text: str,
              headers: dict[str, str] | None = None) -> None:
        data = text.encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
