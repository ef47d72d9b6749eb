"""A local origin for fetch tests and the bench: real yt-dlp talks to 127.0.0.1 only.

Routes map a path to a behaviour (serve a file, answer a status, fail N times then serve,
lie about Content-Length, or a watch page that yt-dlp's generic extractor reads like a
video site's: JSON-LD with title, duration and the media URL, or a Video.js player with
subtitle tracks). Every request is counted and logged with its time and the account it
came from (the `acct` cookie), so tests can prove cache reuse and measure request rates.

Policies make it behave like a rate-limiting origin: `SlidingLimit` answers 429 once a
client goes over its own limit, `Storm` answers every watch page with YouTube's bot-check
wording for a while and then recovers, `Burst` answers the next N pages of one account
with a status (429 bursts). The bot check travels in the HTTP reason phrase, the one place
the generic extractor copies into its error message.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

BOT_CHECK = "Sign in to confirm you're not a bot. This helps protect our community"

# Budgets off and benches short: what tests that are not about the limiter run with.
FAST_LIMITS = {"requests_per_hour": None, "downloads_per_hour": None, "subtitle_requests_per_hour": None,
               "bench_s": 0.01, "bench_max_s": 0.05}


@dataclass
class Route:
    """How the server answers one path."""

    file: Path | None = None
    status: int = 200
    reason: str | None = None  # the status line's reason phrase (where sites put their message)
    fail_first: int = 0  # answer `fail_status` this many times, then serve the file
    fail_status: int = 500
    short_body: bool = False  # announce the full Content-Length, send half, close
    page_for: str | None = None  # a watch page for the media at this path (JSON-LD, or Video.js with subtitles)
    duration_s: float = 3.0  # what the JSON-LD page announces
    subtitles: dict[str, str] = field(default_factory=dict)  # lang -> path (Video.js page)
    text: str | None = None  # serve this text (a subtitle file)


@dataclass
class Hit:
    """One request as the origin saw it."""

    t: float  # time.monotonic()
    path: str
    account: str | None
    status: int
    impersonated: bool = False  # sent by curl_cffi as a browser (client hints only browsers send)


# A policy sees (path, account, now) and may answer instead of the route: (status, reason) or None.
Policy = Callable[[str, "str | None", float], "tuple[int, str] | None"]


class SlidingLimit:
    """The origin's own limit: more than `max_requests` watch pages in `window_s` -> 429."""

    def __init__(self, max_requests: int, window_s: float, prefix: str = "/watch/"):
        self.max_requests, self.window_s, self.prefix = max_requests, window_s, prefix
        self.times: deque[float] = deque()
        self.refused = 0
        self._lock = threading.Lock()

    def __call__(self, path: str, account: str | None, now: float) -> tuple[int, str] | None:
        if not path.startswith(self.prefix):
            return None
        with self._lock:
            while self.times and now - self.times[0] > self.window_s:
                self.times.popleft()
            self.times.append(now)
            if len(self.times) > self.max_requests:
                self.refused += 1
                return 429, "Too Many Requests"
        return None


class Storm:
    """After the `after`-th watch page, every watch page gets a bot check for `seconds`; then recovery."""

    def __init__(self, after: int, seconds: float, prefix: str = "/watch/", status: int = 403):
        self.after, self.seconds, self.prefix, self.status = after, seconds, prefix, status
        self.seen = 0
        self.started: float | None = None
        self.answered = 0
        self._lock = threading.Lock()

    def __call__(self, path: str, account: str | None, now: float) -> tuple[int, str] | None:
        if not path.startswith(self.prefix):
            return None
        with self._lock:
            self.seen += 1
            if self.started is None and self.seen > self.after:
                self.started = now
            if self.started is not None and now - self.started < self.seconds:
                self.answered += 1
                return self.status, BOT_CHECK
        return None

    @property
    def window(self) -> tuple[float, float] | None:
        return None if self.started is None else (self.started, self.started + self.seconds)


class Burst:
    """The `count` watch pages of `account` after its `after`-th get `status` (a 429 burst)."""

    def __init__(self, account: str, after: int, count: int, status: int = 429, prefix: str = "/watch/"):
        self.account, self.after, self.count, self.status, self.prefix = account, after, count, status, prefix
        self.seen = 0
        self.answered = 0
        self._lock = threading.Lock()

    def __call__(self, path: str, account: str | None, now: float) -> tuple[int, str] | None:
        if account != self.account or not path.startswith(self.prefix):
            return None
        with self._lock:
            self.seen += 1
            if self.after < self.seen <= self.after + self.count:
                self.answered += 1
                return self.status, "Too Many Requests"
        return None


def cookie_file(path: Path, account: str) -> Path:
    """A Netscape cookies.txt that makes yt-dlp send `acct=<account>` to 127.0.0.1."""
    path.write_text(f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tacct\t{account}\n")
    return path


def faststart(src: Path, dst: Path) -> Path:
    """Remux with the moov atom first (what web origins serve) using imageio's ffmpeg."""
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(src),
                    "-c", "copy", "-movflags", "+faststart", str(dst)], check=True)
    return dst


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # clients hang up mid-body on purpose
        pass


class MediaServer:
    """Threaded HTTP server on 127.0.0.1:<random port> with per-request latency/bandwidth."""

    def __init__(self, latency_s: float = 0.0, bandwidth_bps: float | None = None):
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        self.log: list[Hit] = []
        self.policies: list[Policy] = []
        self.latency_s = latency_s
        self.bandwidth_bps = bandwidth_bps
        self._lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_template(self) -> str:
        return self.base + "/v/{id}.mp4"

    def add(self, path: str, route: Route) -> None:
        self.routes[path] = route

    def add_video(self, vid: str, media: Path, duration_s: float = 3.0, subtitles: dict[str, str] | None = None,
                  **page) -> None:
        """A watch page `/watch/<vid>` for `/media/<vid>.mp4` (+ `/subs/<vid>.<lang>.vtt` texts)."""
        self.add(f"/media/{vid}.mp4", Route(file=media))
        paths = {}
        for lang, text in (subtitles or {}).items():
            paths[lang] = f"/subs/{vid}.{lang}.vtt"
            self.add(paths[lang], Route(text=text))
        self.add(f"/watch/{vid}", Route(page_for=f"/media/{vid}.mp4", duration_s=duration_s, subtitles=paths, **page))

    def watch_template(self) -> str:
        return self.base + "/watch/{id}"

    def hits_of(self, prefix: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.log if h.path.startswith(prefix)]

    def total_hits(self) -> int:
        with self._lock:
            return sum(self.hits.values())

    def __enter__(self) -> "MediaServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                path = self.path.split("?")[0]
                now = time.monotonic()
                account = self._account()
                with server._lock:
                    server.hits[path] = server.hits.get(path, 0) + 1
                    n = server.hits[path]
                    hit = Hit(now, path, account, 200, "sec-ch-ua" in self.headers)
                    server.log.append(hit)
                if server.latency_s:
                    time.sleep(server.latency_s)
                for policy in server.policies:
                    verdict = policy(path, account, now)
                    if verdict:
                        hit.status = verdict[0]
                        return self._status(*verdict)
                route = server.routes.get(path)
                if route is None:
                    hit.status = 404
                    return self._status(404)
                if route.fail_first and n <= route.fail_first:
                    hit.status = route.fail_status
                    return self._status(route.fail_status)
                if route.page_for is not None:
                    return self._text(self._page(path, route), "text/html", body)
                if route.text is not None:
                    return self._text(route.text, "text/vtt", body)
                if route.file is None:
                    hit.status = route.status
                    return self._status(route.status, route.reason)
                data = route.file.read_bytes()
                start, end = 0, len(data) - 1
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and not route.short_body:
                    a, _, b = rng[6:].partition("-")
                    start = int(a) if a else 0
                    end = min(int(b), end) if b else end
                    if start > end:
                        return self._status(416)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(end - start + 1))
                if route.short_body:
                    self.send_header("Connection", "close")
                self.end_headers()
                if not body:
                    return
                chunk = data[start:end + 1]
                if route.short_body:
                    chunk = chunk[: len(chunk) // 2]
                self._write(chunk)
                if route.short_body:
                    self.close_connection = True

            def _account(self) -> str | None:
                for part in (self.headers.get("Cookie") or "").split(";"):
                    name, _, value = part.strip().partition("=")
                    if name == "acct":
                        return value
                return None

            def _page(self, path: str, route: Route) -> str:
                vid = path.rsplit("/", 1)[-1]
                media = server.base + route.page_for
                if route.subtitles:  # Video.js: formats and subtitle tracks, no duration
                    tracks = "".join(f'player.addRemoteTextTrack({{src: "{server.base + p}", srclang: "{lang}", '
                                     f'label: "{lang}"}}, false);' for lang, p in route.subtitles.items())
                    return (f'<html><head><title>{vid}</title></head><body><video id="p"></video><script>'
                            f'var player = videojs("p"); player.src({{src: "{media}", type: "video/mp4"}});'
                            f'{tracks}</script></body></html>')
                ld = {"@context": "https://schema.org", "@type": "VideoObject", "name": f"video {vid}",
                      "duration": f"PT{route.duration_s:g}S", "contentUrl": media, "encodingFormat": "video/mp4"}
                return (f'<html><head><title>{vid}</title><script type="application/ld+json">{json.dumps(ld)}'
                        '</script></head><body></body></html>')

            def _text(self, text: str, content_type: str, body: bool) -> None:
                data = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def _write(self, chunk: bytes) -> None:
                step = 64 * 1024
                for i in range(0, len(chunk), step):
                    piece = chunk[i:i + step]
                    try:
                        self.wfile.write(piece)
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    if server.bandwidth_bps:
                        time.sleep(len(piece) / server.bandwidth_bps)

            def _status(self, code: int, reason: str | None = None) -> None:
                msg = f"status {code}".encode()
                self.send_response(code, reason)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(msg)

        return Handler
