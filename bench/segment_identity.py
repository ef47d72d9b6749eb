"""Same outputs before and after a change to the segment stage's speed: cuts, signals, hashes, frames.

`snapshot OUT.pkl` runs `segment_video` on the cached accuracy encodes (bench/.cache/footage) and
the real clips (../shared/real_videos): raw cuts (confirmed detector, signals off, min_scene_s 0)
and the default stage's scenes, signals, dense pHashes and sampled frames' digests. `compare A B`
asserts that two snapshots (run each from its own worktree, e.g. main and a branch) agree: cut
frames and kinds, scenes, signals, hashes and frame digests exactly, cut scores to 1e-4.
Usage: python bench/segment_identity.py snapshot OUT.pkl | compare A.pkl B.pkl
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.segment import SegmentConfig, segment_video  # noqa: E402

BENCH = Path(__file__).resolve().parent
REAL = BENCH.parents[1] / "shared" / "real_videos"


def snapshot(out: str) -> None:
    files = sorted((BENCH / ".cache" / "footage").glob("*.mp4")) + sorted(REAL.glob("*/*.mp4"))
    snap = {}
    for f in files:
        raw = segment_video(str(f), SegmentConfig(sample_fps=0.1, signals=False, min_scene_s=0))
        full = segment_video(str(f), SegmentConfig(sample_fps=0.1))
        snap[f.name] = dict(
            raw=[(c.frame, c.kind, c.score) for c in raw.cuts],
            scenes=[(s.start_frame, s.end_frame, s.phash, s.motion, s.transition) for s in full.scenes],
            signals=full.signals, hashes=None if full.query_h is None else full.query_h.tolist(),
            frames=[fr.digest for fr in full.frames])
        print(f"{f.name}: {len(raw.cuts)} cuts", flush=True)
    Path(out).write_bytes(pickle.dumps(snap))


def compare(a_path: str, b_path: str) -> None:
    a, b = (pickle.loads(Path(p).read_bytes()) for p in (a_path, b_path))
    assert a.keys() == b.keys(), "different files"
    for name in a:
        x, y = a[name], b[name]
        assert [c[:2] for c in x["raw"]] == [c[:2] for c in y["raw"]], f"{name}: cuts differ"
        diff = max([abs(c[2] - d[2]) for c, d in zip(x["raw"], y["raw"])] or [0.0])
        assert diff < 1e-4, f"{name}: cut scores differ by {diff}"
        for key in ("scenes", "signals", "hashes", "frames"):
            assert x[key] == y[key], f"{name}: {key} differ"
        print(f"{name:32s} {len(x['raw']):3d} cuts identical (scores within {diff:.1e}), scenes, signals, "
              f"hashes, frames identical")
    print(f"all {len(a)} files identical")


if __name__ == "__main__":
    {"snapshot": snapshot, "compare": compare}[sys.argv[1]](*sys.argv[2:])
