"""Fetch throughput: the pipeline's FetchStage with K workers vs a plain sequential yt-dlp loop.

Both download the same N videos from a local origin that adds per-request latency and a
per-connection bandwidth cap (a remote CDN in miniature), in one run, so the ratio is fair.
The pipeline does more per video (metadata probe, header probe, decode check), so the ratio
is what concurrency buys net of that work.

Every request of the pipeline also passes the cluster-wide limiter (budgets off here, so it
never makes anyone wait): the bench reports its overhead per limiter call and per video,
in-process (what the run measures) and through the named Ray actor the runner uses
(`--ray-calls` round trips against a local Ray; 0 skips it).

    python bench/fetch.py [--videos N] [--workers K] [--latency 0.2] [--bandwidth-mbps 4] [--ray-calls 300]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.acquire.config import FetchConfig  # noqa: E402
from pipeline.acquire.stages import FetchStage  # noqa: E402
from pipeline.records import VideoTask  # noqa: E402
from pipeline.samples import SampleSpec, make_video  # noqa: E402
from tests.acquire_server import MediaServer, Route  # noqa: E402


def sequential_ytdlp(urls: list[str], out: Path) -> int:
    """The baseline: one YoutubeDL, one URL after another, no verification."""
    import yt_dlp

    params = {"quiet": True, "no_warnings": True, "noprogress": True,
              "outtmpl": str(out / "%(id)s.%(ext)s"), "cachedir": False}
    with yt_dlp.YoutubeDL(params) as ydl:
        failed = ydl.download(urls)
    return sum(p.stat().st_size for p in out.glob("*.mp4")) if not failed else -1


UNLIMITED = {"requests_per_hour": None, "downloads_per_hour": None, "subtitle_requests_per_hour": None}


def pipeline_fetch(srv: MediaServer, ids: list[str], cache: Path, workers: int) -> tuple[int, int, dict]:
    cfg = FetchConfig(cache_dir=str(cache), url_template=srv.url_template(), min_duration_s=1,
                      retries=0, subtitle_langs=[], limits=UNLIMITED)
    stage = FetchStage(cfg)
    stage.setup()
    tasks = [VideoTask(v, v, "youtube", i) for i, v in enumerate(ids)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = list(pool.map(stage.process, tasks))
    ok = [t for t in done if t.status == "accepted"]
    for t in done:
        if t.rejected:
            print(f"  rejected {t.video_id}: {t.reject_reason}: {t.reject_message}", file=sys.stderr)
    return len(ok), sum(t.file_size or 0 for t in ok), stage.throttle.overhead()


def ray_limiter_round_trip(calls: int) -> float:
    """Seconds per take() through the runner's named limiter actor on a local Ray."""
    from pipeline.runner import init_ray
    from pipeline.services import start_services

    init_ray(None, num_cpus=2)
    stage = FetchStage(FetchConfig(limits=UNLIMITED))
    start_services([stage])
    limiter = stage.limiter
    lease = limiter.lease().lease  # the first call waits for the actor to start
    start = time.perf_counter()
    for _ in range(calls):
        limiter.take(lease, "request")
    return (time.perf_counter() - start) / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds added to every HTTP request")
    ap.add_argument("--bandwidth-mbps", type=float, default=4.0, help="per-connection cap in MB/s (0 = none)")
    ap.add_argument("--seconds", type=float, default=8.0, help="duration of each sample video")
    ap.add_argument("--ray-calls", type=int, default=300, help="limiter round trips timed through the Ray actor (0 = skip)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        src = make_video(root / "src.mp4", SampleSpec([args.seconds / 2] * 2, fps=15, width=640, height=360))
        print(f"generated sample ({src.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t0:.1f}s")
        ids = [f"bench{i:06d}" for i in range(args.videos)]
        bw = args.bandwidth_mbps * 1e6 if args.bandwidth_mbps > 0 else None
        with MediaServer(latency_s=args.latency, bandwidth_bps=bw) as srv:
            for vid in ids:
                srv.add(f"/v/{vid}.mp4", Route(file=src))
            (root / "seq").mkdir()
            t0 = time.perf_counter()
            seq_bytes = sequential_ytdlp([srv.url_template().format(id=v) for v in ids], root / "seq")
            seq_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            n_ok, pipe_bytes, limiter = pipeline_fetch(srv, ids, root / "cache", args.workers)
            pipe_s = time.perf_counter() - t0
    if seq_bytes < 0 or n_ok != len(ids):
        raise SystemExit(f"bench failed: sequential bytes={seq_bytes}, pipeline accepted {n_ok}/{len(ids)}")
    seq_rate, pipe_rate = len(ids) / seq_s, n_ok / pipe_s
    print(f"videos={len(ids)} latency={args.latency}s bandwidth={args.bandwidth_mbps} MB/s/conn")
    print(f"sequential yt-dlp : {seq_s:6.2f}s  {seq_rate:6.2f} downloads/s  {seq_bytes / seq_s / 1e6:6.2f} MB/s")
    print(f"FetchStage x{args.workers:<3}   : {pipe_s:6.2f}s  {pipe_rate:6.2f} downloads/s  "
          f"{pipe_bytes / pipe_s / 1e6:6.2f} MB/s  (probe + download + verify)")
    print(f"ratio pipeline/sequential: {pipe_rate / seq_rate:.2f}x")
    per_video = limiter["calls"] / len(ids)
    print(f"limiter in-process: {limiter['calls']} calls ({per_video:.1f} per video), {limiter['per_call_us']:.1f} us "
          f"per call, {1e3 * limiter['overhead_s'] / len(ids):.3f} ms per video "
          f"({100 * limiter['overhead_s'] / (pipe_s * args.workers):.3f}% of worker time)")
    if args.ray_calls:
        rt = ray_limiter_round_trip(args.ray_calls)
        print(f"limiter via the Ray actor: {1e3 * rt:.2f} ms per call, {1e3 * rt * per_video:.1f} ms per video "
              f"(against {1e3 * pipe_s * args.workers / len(ids):.0f} ms of worker time per video here)")


if __name__ == "__main__":
    main()
