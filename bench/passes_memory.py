"""Driver memory in `synth.execution: passes`: a wave's frames stay out of the driver.

A wave of V videos x F frames (random bytes of a realistic JPEG size) goes through a CPU
stage and two model rounds shaped like synthesis and verification (window captions with 8
frames each, then questions with 32 frames each) against an OpenAI-compatible server in
another process that answers at once. The driver's RSS is sampled throughout.

Printed against a baseline measured in the same run: the wave's frame bytes (what the
driver held before frame keepers, at the least), and the image bytes the requests would
have carried inline (every request pickled its frames before), against the bytes the
pass rows really carried.

    python bench/passes_memory.py                 # 200 videos x 256 frames (the issue's wave)
    python bench/passes_memory.py --videos 20     # quick
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import Process
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from pipeline import runner  # noqa: E402
from pipeline.records import Frame, Scene, VideoTask  # noqa: E402
from pipeline.stage import Resources, Stage  # noqa: E402
from synth.backends.config import BackendConfig  # noqa: E402
from synth.backends.types import ChatRequest  # noqa: E402
from synth.captions import frames_in  # noqa: E402
from synth.rounds import ModelStage, Round, Rounds  # noqa: E402


def _serve(port_file: str) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "A"}}],
                               "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    Path(port_file).write_text(str(httpd.server_address[1]))
    httpd.serve_forever()


class FakeFrames(Stage):
    """Stands in for the media step: F frames of `size` incompressible bytes per video."""

    name = "media"
    resources = Resources(cpus=1.0, concurrency=(1, 2))

    def __init__(self, frames: int, size: int) -> None:
        self.n, self.size = frames, size

    def process(self, task: VideoTask) -> VideoTask:
        duration = float(self.n)  # one frame a second
        task.duration_s, task.width, task.height, task.fps, task.frame_count = duration, 448, 252, 30.0, self.n * 30
        task.scenes = [Scene(0, 0.0, duration, 0, self.n * 30, duration / 2, "start")]
        task.frames = [Frame(float(i), os.urandom(self.size), 448, 252, 0, index=i) for i in range(self.n)]
        return task


class Asker(ModelStage):
    """Two rounds shaped like synthesis and verification: 8 windows x 8 frames, 4 questions x 32 frames."""

    name = "asker"

    def __init__(self, base_url: str) -> None:
        cfg = BackendConfig.model_validate({"kind": "openai", "model": "m", "openai": {
            "base_url": base_url, "api_key_env": None, "concurrency": 16}})
        self.roles, self.factories = {"teacher": cfg}, {}
        self.resources = cfg.actor_resources(2, 2)
        self.env_vars = ()

    def rounds(self, tasks) -> Rounds:
        for name, parts, per in (("caption", 8, 8), ("verify", 4, 32)):
            rnd = Round(name, "teacher", "cost")
            for t in tasks:
                step = t.duration_s / parts
                for k in range(parts):
                    window = (k * step, (k + 1) * step) if name == "caption" else (0.0, float("inf"))
                    rnd.ask(t, ChatRequest(key=f"{t.video_id}/{name}/{k}", system=None, prompt=f"{name} {k}",
                                           frames=frames_in(t.frames, *window, per), frames_key=t.frames_key,
                                           max_tokens=4))
            yield rnd


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--frame-kb", type=float, default=24.0, help="bytes per frame (a 448x252 JPEG at q90 ~ 24 KB)")
    args = ap.parse_args()
    import ray

    port_file = f"/tmp/passes-bench-{os.getpid()}.port"
    server = Process(target=_serve, args=(port_file,), daemon=True)
    server.start()
    while not Path(port_file).exists():
        time.sleep(0.05)
    base_url = f"http://127.0.0.1:{Path(port_file).read_text()}/v1"
    runner.init_ray(None, num_cpus=2, object_store_mb=2048)

    carried = {"rows": 0, "inline": 0}
    original = runner._pass_rows

    def measured(requests):  # what the pass rows carry, against the frames they reference
        rows = original(requests)
        carried["rows"] += sum(len(r["request"]) for r in rows)
        carried["inline"] += sum(args.frame_kb * 1024 * len(q.frames) for q in requests)
        return rows

    stages = ([FakeFrames(args.frames, int(args.frame_kb * 1024))], [Asker(base_url)])
    # warm-up wave of 2 videos: Ray Data's and the backends' imports are not the wave's memory
    list(runner.run_waves([VideoTask(f"warmup{i:05d}", "w", "youtube", i) for i in range(2)], *stages,
                          wave_videos=2, replicas={"teacher": 2}, progress=False, echo=lambda s: None))
    runner._pass_rows = measured
    peak, stop = [rss_mb()], threading.Event()
    before = peak[0]

    def sample() -> None:
        while not stop.is_set():
            peak.append(rss_mb())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    tasks = [VideoTask(f"video{i:06d}", f"video{i:06d}", "youtube", i) for i in range(args.videos)]
    start = time.perf_counter()
    sampler.start()
    done = list(runner.run_waves(tasks, *stages, wave_videos=args.videos, replicas={"teacher": 2}, progress=False,
                                 echo=lambda s: print(s, file=sys.stderr)))
    stop.set()
    sampler.join()
    wall = time.perf_counter() - start
    failed = sum(t.cost.failed_requests for t in done)
    requests = sum(t.cost.requests for t in done)
    wave_mb = args.videos * args.frames * args.frame_kb / 1024
    growth = max(peak) - before
    print(f"wave: {args.videos} videos x {args.frames} frames x {args.frame_kb:g} KB = {wave_mb:.0f} MB of frames; "
          f"{requests} requests ({failed} failed) in {wall:.1f} s")
    print(f"driver RSS: {before:.0f} MB before, peak {max(peak):.0f} MB: growth {growth:.0f} MB "
          f"= {growth / wave_mb:.3f} x the wave's frame bytes (baseline: the driver held them all)")
    print(f"pass rows: {carried['rows'] / 2**20:.1f} MB carried vs {carried['inline'] / 2**20:.0f} MB of images the "
          f"requests reference inline: {carried['rows'] / max(1, carried['inline']):.4f} x")
    server.terminate()
    Path(port_file).unlink(missing_ok=True)
    ray.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
