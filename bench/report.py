"""`curate report`: time and size for the e2e dataset and for a synthetic 10,000-video / 100,000-QA-row one.

    python bench/report.py                 # both; screenshots -> bench/report-*.png
    python bench/report.py --videos 2000   # a smaller synthetic dataset

The e2e dataset is the report test's (tests/report_dataset.py: real H.264 files, the scripted
teacher and verifier, `curate run`). The synthetic one is made from that dataset's own rows,
varied per video (durations, scenes, signals, categories, formats, decisions, rejects, runs),
written as committed shards; its rows point at media that does not exist, so the sample browser
shows its items without frames and says why (the plots need no media). Baseline, in the same
run: the stats the card prints (`pipeline.report.quality_report`; it read the QA rows into Python
objects until issue 27 streamed it too: bench/scale_memory.py compares it with that code), against
the report's streaming scan over the same shards; each in its own process, with its peak RSS.
"""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.schema import arrow_schema  # noqa: E402
from pipeline.store import DatasetStore  # noqa: E402

CATEGORIES = {"perception": ["object_description", "count", "binary", "visual_text"],
              "spatio_temporal": ["temporal_localization", "object_direction", "time_order"],
              "event_action": ["fine_grained_action", "causal_reasoning"], "holistic": ["summary", "theme"]}
FORMATS = ["open_ended", "multiple_choice", "grounding", "description"]
VIDEO_REJECTS = [("fetch", "unavailable"), ("fetch", "too_short"), ("segment", "corrupt_media"),
                 ("filter", "static_video"), ("dedupe", "near_duplicate"), ("ingest", "benchmark_overlap")]
QA_REJECTS = ["missing_field", "span_out_of_range", "hedge_answer", "duplicate_question", "blind_answerable",
              "disputed"]
SHARD_VIDEOS = 1000


def _templates(out: Path) -> dict[str, dict]:
    store = DatasetStore(str(out))
    videos = store.read_table("videos").to_pylist()
    sft = store.read_table("sft").to_pylist()
    return {"video": next(v for v in videos if v["status"] == "accepted"),
            "sft": next(r for r in sft if r["verification"]), "rl": store.read_table("rl").slice(0, 1).to_pylist()[0],
            "reject": store.read_table("rejects").slice(0, 1).to_pylist()[0], "runs": store.runs()}


def synthesize(templates: dict[str, dict], dest: Path, videos: int, qa_rows: int, seed: int = 0) -> Path:
    """Committed shards of `videos` videos (90% accepted) and `qa_rows` QA rows (sft + rejects)."""
    rng = np.random.default_rng(seed)
    store = DatasetStore(str(dest))
    store.init()
    accepted = max(1, int(videos * 0.9))
    per_video = np.full(accepted, qa_rows // accepted)
    per_video[: qa_rows - per_video.sum()] += 1
    v_t, s_t, r_t, j_t = templates["video"], templates["sft"], templates["rl"], templates["reject"]
    k = 0
    for chunk_start in range(0, videos, SHARD_VIDEOS):
        rows: dict[str, list] = {"videos": [], "sft": [], "rl": [], "rejects": []}
        for i in range(chunk_start, min(videos, chunk_start + SHARD_VIDEOS)):
            vid = f"synth{i:07d}"
            duration = float(np.clip(rng.lognormal(np.log(900), 0.7), 60, 7200))
            v = {**v_t, "video_id": vid, "source": vid, "input_index": i, "duration_s": round(duration, 1),
                 "video_path": f"/nonexistent/{vid}.mp4", "media_uri": None, "title": f"synthetic {i}"}
            if i >= accepted:
                stage, reason = VIDEO_REJECTS[rng.integers(len(VIDEO_REJECTS))]
                v.update(status="rejected", reject_reason=reason, reject_stage=stage,
                         reject_message=f"synthetic {reason}", scenes=[], num_scenes=0, signals=None, captions=[])
                rows["videos"].append(v)
                continue
            n_scenes = int(rng.integers(3, 60))
            cuts = np.sort(rng.uniform(0, duration, n_scenes - 1)).round(2)
            bounds = [0.0, *cuts.tolist(), round(duration, 2)]
            v["scenes"] = [{**v_t["scenes"][0], "index": j, "start_s": a, "end_s": b, "keyframe_s": round((a + b) / 2, 2),
                            "start_frame": int(a * 30), "end_frame": int(b * 30)} for j, (a, b) in enumerate(zip(bounds, bounds[1:]))]
            v["num_scenes"] = n_scenes
            v["signals"] = {**v_t["signals"], "motion": float(rng.gamma(2, 2)), "static_share": float(rng.beta(1, 20)),
                            "black_share": float(rng.beta(1, 50)), "blank_share": float(rng.beta(1, 60)),
                            "text_score": float(rng.beta(2, 8)), "letterbox": float(rng.choice([0, 0, 0, 0.22])),
                            "pillarbox": 0.0}
            rows["videos"].append(v)
            for q in range(int(per_video[i])):
                cat = list(CATEGORIES)[rng.integers(4)]
                fmt = FORMATS[rng.choice(4, p=[0.35, 0.35, 0.25, 0.05])]
                start = float(rng.uniform(0, duration * 0.9))
                end = duration if fmt == "description" else min(duration, start + float(rng.lognormal(2.5, 0.8)))
                options = ["red", "blue", "green", "white"] if fmt == "multiple_choice" else []
                answer = options[rng.integers(4)] if options else "a synthetic answer"
                rate = float(rng.integers(0, 4) / 3)
                decision = "keep" if rate >= 0.67 else "hard"
                row = {**s_t, "id": f"{vid}-t{q:03d}", "video_id": vid, "video_path": v["video_path"], "duration_s": v["duration_s"],
                       "category": cat, "qa_type": CATEGORIES[cat][rng.integers(len(CATEGORIES[cat]))], "format": fmt,
                       "question": f"synthetic question {q} about {vid}?", "options": options, "answer": answer,
                       "evidence_start_s": round(start, 1), "evidence_end_s": round(end, 1),
                       "verification": {**s_t["verification"], "pass_rate": rate, "decision": decision}}
                if rng.random() < 0.15:
                    reason = QA_REJECTS[rng.integers(len(QA_REJECTS))]
                    raw = ({**row, "verification": {**row["verification"], "decision": "reject", "reason": reason}}
                           if reason in ("blind_answerable", "disputed") else {"question": row["question"]})
                    raw.pop("messages", None)
                    rows["rejects"].append({**j_t, "video_id": vid, "reason": reason, "message": f"synthetic {reason}",
                                            "row_json": json.dumps(raw)})
                    continue
                rows["sft"].append(row)
                if fmt in ("grounding", "multiple_choice"):
                    rows["rl"].append({**r_t, "video_id": vid, "extra_info": {**r_t["extra_info"], "id": row["id"],
                                       "video_id": vid, "reward_kind": "temporal_iou" if fmt == "grounding" else "option_letter"}})
        chunk = f"20261201T{k:06d}-synth"
        for config, config_rows in rows.items():
            if config_rows:
                table = pa.Table.from_pylist(config_rows, schema=arrow_schema(config))
                pq.write_table(table, store.path("data", config, f"{chunk}.parquet"), compression="zstd")
        k += 1
    for n in range(6):  # runs over a week: throughput, tokens per kept item and cache reuse vary
        run = copy.deepcopy(templates["runs"][0])
        run.update(run_id=f"2026120{n + 1}T000000-synth", started_at=f"2026-12-0{n + 1}T00:00:00Z",
                   processed=int(videos / 6), wall_s=float(rng.uniform(3000, 9000)), qa_kept=int(qa_rows / 7))
        for who in run.get("cost", {}).values():
            who["total"] = {k2: int(v * videos / 6 * rng.uniform(0.7, 1.3)) for k2, v in who["total"].items()}
            who["total"]["cached_requests"] = int(who["total"].get("requests", 0) * n / 6)
        store.write_run(run["run_id"], run)
    return dest


CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from pipeline.store import DatasetStore
from pipeline.report import quality_report
from pipeline.viewer.scan import scan
best = float("inf")
for _ in range(2):  # best of two: the machine is shared
    t = time.perf_counter()
    (scan if {what!r} == "scan" else quality_report)(DatasetStore({out!r}))
    best = min(best, time.perf_counter() - t)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child would report its parent's peak
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"s": best, "rss_mb": hwm / 1024}}))
"""


def child(what: str, out: Path) -> dict:
    """Seconds (best of two) and peak RSS of `scan` or the baseline, in a fresh process."""
    proc = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), what=what, out=str(out))],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def screenshots(page: Path, shots: list[tuple[str, str | None]]) -> None:
    """PNG screenshots of `page` (quantised to 256 colours, so they stay small in the repo)."""
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,950"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        driver.get(page.as_uri())
        time.sleep(3)
        for name, anchor in shots:
            if anchor:
                driver.execute_script(f"document.getElementById({anchor!r}).scrollIntoView()")
                time.sleep(1)
            target = ROOT / "bench" / name
            driver.save_screenshot(str(target))
            Image.open(target).convert("RGB").quantize(256).save(target, optimize=True)
    finally:
        driver.quit()


def measure(label: str, out: Path, dest: Path) -> None:
    from pipeline.viewer.build import build_report

    result = build_report(str(out), dest, videos=40)
    print(f"{label}: {result.render()}")
    scan = child("scan", out)
    base = child("quality", out)
    print(f"  streaming scan {scan['s']:.2f} s, peak RSS {scan['rss_mb']:.0f} MB; baseline quality_report "
          f"(rows as Python objects) {base['s']:.2f} s, peak RSS {base['rss_mb']:.0f} MB; "
          f"time ratio {base['s'] / scan['s']:.2f}x, RSS ratio {base['rss_mb'] / scan['rss_mb']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--qa-rows", type=int, default=100_000)
    parser.add_argument("--e2e", type=Path, help="an existing e2e dataset (default: build one, ~2 min)")
    parser.add_argument("--no-screenshots", action="store_true")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo job's report (README screenshot)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-report-"))
    e2e = args.e2e
    if e2e is None:
        from tests.report_dataset import build_dataset

        t = time.perf_counter()
        e2e = build_dataset(work / "e2e")
        print(f"e2e dataset built in {time.perf_counter() - t:.0f} s")
    measure("e2e", e2e, work / "e2e-report")
    t = time.perf_counter()
    synth = synthesize(_templates(e2e), work / "synth", args.videos, args.qa_rows)
    print(f"synthetic dataset ({args.videos} videos, {args.qa_rows} QA rows) written in {time.perf_counter() - t:.0f} s")
    measure(f"synthetic {args.videos} videos / {args.qa_rows} QA rows", synth, work / "synth-report")
    if not args.no_demo:  # the README's demo (no teacher: videos, rejects and runs only)
        from tests.helpers import curate

        run = curate("run", str(ROOT / "jobs" / "demo.yaml"), "--out", str(work / "demo_out"), "--set",
                     f"work_dir={work / 'demo_work'}", "--no-progress")
        if run.returncode:
            raise RuntimeError(run.stderr[-2000:])
        measure("demo", work / "demo_out", work / "demo-report")
        if not args.no_screenshots:
            screenshots(work / "demo-report" / "index.html", [("report-demo.png", None)])
    if not args.no_screenshots:
        screenshots(work / "e2e-report" / "index.html", [("report-e2e-top.png", None),
                                                         ("report-e2e-browser.png", "browser")])
        screenshots(work / "synth-report" / "index.html", [("report-synthetic-qa.png", "qa")])
        print("screenshots: " + ", ".join(str(p.relative_to(ROOT)) for p in sorted((ROOT / "bench").glob("report-*.png"))))
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
