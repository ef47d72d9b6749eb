"""A local origin for fetch tests and the bench: real yt-dlp talks to 127.0.0.1 only.

Routes map a path to a behaviour (serve a file, answer a status, fail N times then serve,
lie about Content-Length), and every request is counted so tests can prove cache reuse.
"""
from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Route:
    """How the server answers one path."""

    file: Path | None = None
    status: int = 200
    fail_first: int = 0  # answer `fail_status` this many times, then serve the file
    fail_status: int = 500
    short_body: bool = False  # announce the full Content-Length, send half, close


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
                with server._lock:
                    server.hits[path] = server.hits.get(path, 0) + 1
                    n = server.hits[path]
                if server.latency_s:
                    time.sleep(server.latency_s)
                route = server.routes.get(path)
                if route is None:
                    return self._status(404)
                if route.fail_first and n <= route.fail_first:
                    return self._status(route.fail_status)
                if route.file is None:
                    return self._status(route.status)
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

            def _status(self, code: int) -> None:
                msg = f"status {code}".encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(msg)

        return Handler
