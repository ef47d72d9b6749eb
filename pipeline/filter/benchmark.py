"""`curate fingerprint DIR`: signatures of a folder of benchmark videos, for decontamination."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipeline.filter.fingerprint import Signature, write_fingerprints
from pipeline.segment.config import SegmentConfig
from pipeline.segment.decode import MediaError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv")


@dataclass
class FingerprintReport:
    written: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # file -> why


def fingerprint_dir(folder: str | Path, out: str | Path, cfg: SegmentConfig | None = None,
                    echo: Callable[[str], None] = lambda s: None) -> FingerprintReport:
    """Decode every video under `folder` (recursively) with the segment stage's code and write
    their signatures to `out` (JSON lines). The video ID is the file name without extension
    (benchmarks name their files by YouTube ID); a file that cannot be decoded is reported."""
    from pipeline.segment.stages import segment_video

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"not a folder: {str(folder)!r}")
    cfg = (cfg or SegmentConfig()).model_copy(update={"signals": True, "sample_fps": 0.05, "max_frames": 8})
    report = FingerprintReport()
    signatures = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()):
        try:
            res = segment_video(str(path), cfg)
        except MediaError as exc:
            report.failed[str(path)] = f"{exc.reason}: {exc}"
            echo(f"skipped {path}: {exc.reason}: {exc}")
            continue
        sig = Signature.from_points(path.stem, res.duration_s, res.signals.signature if res.signals else [])
        if not len(sig.h):
            report.failed[str(path)] = "no usable frames to hash (black or blank throughout)"
            continue
        signatures.append(sig)
        echo(f"{path.name}: {len(sig.h)} signature points, {res.duration_s:.1f} s")
    report.written = write_fingerprints(out, signatures, source=str(folder))
    return report
