"""Write the report: index.html, its assets, the plots' data and the sample pages, into one folder.

    DIR/index.html           the page (string.Template over assets/template.html)
    DIR/assets/              plotly.min.js (from the installed plotly package), app.js, style.css
    DIR/data/report.js       figures (plotly JSON) and the browser's index, as `window.REPORT = ...`
    DIR/data/p<NNNN>.js      the sample browser's pages (item details, frame links), loaded on demand
    DIR/frames/v<NNNNN>/     small JPEG frames

Data travels in .js files rather than .json because a page opened from disk may load scripts
beside it but not fetch() files. Nothing refers to the network.
"""
from __future__ import annotations

import html
import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from pipeline.store import DatasetStore
from pipeline.viewer.browse import build_browser
from pipeline.viewer.figures import all_figures
from pipeline.viewer.scan import DatasetStats, scan

ASSETS = ("app.js", "style.css")


@dataclass
class ReportResult:
    """What `curate report` prints: where, how big, how long."""

    path: Path
    bytes_total: int
    bytes_without_plotly: int
    files: int
    seconds: float
    scan_seconds: float
    browser_seconds: float
    sampled_videos: int
    sampled_items: int
    frames: int
    media_notes: int

    def render(self) -> str:
        return (f"report {self.path / 'index.html'}: {self.files} files, {self.bytes_total / 1e6:.1f} MB "
                f"({self.bytes_without_plotly / 1e6:.2f} MB without plotly.min.js) in {self.seconds:.1f} s "
                f"(scan {self.scan_seconds:.1f} s, browser {self.browser_seconds:.1f} s); sample browser: "
                f"{self.sampled_videos} videos, {self.sampled_items} items, {self.frames} frames"
                + (f", {self.media_notes} videos without reachable media" if self.media_notes else ""))


def _json(value: Any) -> str:
    from plotly.utils import PlotlyJSONEncoder

    return json.dumps(value, cls=PlotlyJSONEncoder, separators=(",", ":"))


def _counts_table(stats: DatasetStats) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{n}</td></tr>" for k, n in stats.funnel())
    return f'<table class="counts"><tbody>{rows}</tbody></table>'


def _examples_table(stats: DatasetStats) -> str:
    """Every reject reason with a few example rows: what was rejected, where, and the message."""
    parts = []
    if stats.video_examples:
        rows = []
        for (stage, reason), n in sorted(stats.video_rejects.items(), key=lambda kv: -kv[1]):
            ex = [e for e in stats.video_examples.get(reason, []) if (e["stage"] or "?") == stage][:3]
            cell = "<br>".join(f"<code>{html.escape(e['video_id'])}</code>: {html.escape(e['message'] or '')[:300]}"
                               for e in ex)
            rows.append(f"<tr><td>{html.escape(reason)}</td><td>{html.escape(stage)}</td><td>{n}</td><td>{cell}</td></tr>")
        parts.append('<h3>Rejected videos: examples</h3><table class="examples"><thead><tr><th>reason</th>'
                     f'<th>stage</th><th>videos</th><th>examples</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    if stats.qa_examples:
        rows = []
        for reason, n in stats.qa_rejects.most_common():
            cell = "<br>".join(f"<code>{html.escape(e['video_id'])}</code>: {html.escape(e['question'])} "
                               f"&rarr; {html.escape(e['answer'])} <i>({html.escape(e['message'][:200])})</i>"
                               for e in stats.qa_examples.get(reason, []))
            rows.append(f"<tr><td>{html.escape(reason)}</td><td>{n}</td><td>{cell}</td></tr>")
        parts.append('<h3>Rejected QA items: examples</h3><table class="examples"><thead><tr><th>reason</th>'
                     f'<th>items</th><th>examples</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    if stats.schema_rejects:
        parts.append("<p>Rows quarantined by schema validation: " + ", ".join(
            f"{html.escape(k)} {n}" for k, n in stats.schema_rejects.items()) + "</p>")
    return "\n".join(parts) or "<p>No rejects.</p>"


def _dir_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def build_report(out: str, dest: str | Path, *, videos: int = 40, seed: int = 0,
                 token_cap: int | None = None) -> ReportResult:
    """Render the report of dataset `out` into folder `dest` (replaced if it holds an older report)."""
    import plotly.offline

    started = time.perf_counter()
    store = DatasetStore(out)
    if not store.fs.exists(store.path("data")):
        raise FileNotFoundError(f"{out} is not a dataset written by curate (no data/ folder)")
    dest = Path(dest)
    for sub in ("data", "frames"):  # an older report's pages and frames would be linked by nobody
        shutil.rmtree(dest / sub, ignore_errors=True)
    (dest / "assets").mkdir(parents=True, exist_ok=True)
    (dest / "data").mkdir(parents=True, exist_ok=True)

    stats = scan(store)
    scanned = time.perf_counter()
    plots, absent = all_figures(stats, token_cap)
    figures = {k: (f.to_plotly_json() if f is not None else None) for k, f in plots.items()}
    browser = build_browser(store, stats.accepted_video_ids(), dest, videos=videos, seed=seed)
    browsed = time.perf_counter()

    (dest / "assets" / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
    for name in ASSETS:
        (dest / "assets" / name).write_bytes(resources.files("pipeline.viewer").joinpath("assets", name).read_bytes())
    report = {"figures": figures, "absent": absent, "index": browser.index, "pages": len(browser.pages)}
    (dest / "data" / "report.js").write_text(f"window.REPORT = {_json(report)};\n", encoding="utf-8")
    for n, page in enumerate(browser.pages):
        (dest / "data" / f"p{n:04d}.js").write_text(f"window.reportPage({n}, {_json(page)});\n", encoding="utf-8")
    template = Template(resources.files("pipeline.viewer").joinpath("assets", "template.html").read_text("utf-8"))
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    accepted = stats.status.get("accepted", 0)
    sample_note = (f"{len(browser.index['videos'])} of {accepted} accepted videos, drawn at random (seed {seed}), "
                   f"with every QA item made for them: kept, hard, rejected by the verifier and refused by the checks. "
                   f"Frames are decoded from the media the rows point at.")
    (dest / "index.html").write_text(template.substitute(
        title=html.escape(f"Dataset report: {out}"), meta=html.escape(
            f"generated {generated}; {stats.videos} videos ({accepted} accepted), {stats.sft_rows} sft, "
            f"{stats.rl_rows} rl, {stats.distill_rows} distill rows; {len(stats.runs)} runs"),
        counts=_counts_table(stats), examples=_examples_table(stats), sample_note=html.escape(sample_note)),
        encoding="utf-8")
    total, files = _dir_size(dest)
    return ReportResult(path=dest, bytes_total=total,
                        bytes_without_plotly=total - (dest / "assets" / "plotly.min.js").stat().st_size, files=files,
                        seconds=time.perf_counter() - started, scan_seconds=scanned - started,
                        browser_seconds=browsed - scanned, sampled_videos=len(browser.index["videos"]),
                        sampled_items=len(browser.index["items"]), frames=browser.frames_written,
                        media_notes=browser.media_notes)
