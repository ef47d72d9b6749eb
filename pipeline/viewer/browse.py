"""The sample browser's data: a seeded sample of accepted videos with every QA item made for them.

Kept items come from `sft`, items the verifier rejected and items the checks refused from
`rejects` (their `row_json`), so the browser shows what was dropped beside what was kept.
Only the sampled videos' rows are read in full (the shards are scanned with an `is_in` filter);
the index (one small entry per item, for the filters) goes into the page, the details and frame
links into paged script files loaded on demand, so the page stays small at any dataset size.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.store import DatasetStore
from pipeline.viewer.frames import extract
from pipeline.viewer.scan import iter_batches

MAX_KEYFRAMES = 12  # per video strip
SPAN_FRAMES = 4  # frames shown inside an item's evidence span
PAGE_VIDEOS = 10


@dataclass
class Browser:
    """The sample: `index` goes inline in the page, `pages[i]` into pages/p<i>.js."""

    index: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"videos": [], "items": []})
    pages: list[dict[str, Any]] = field(default_factory=list)
    frames_written: int = 0
    media_notes: int = 0


def sample_ids(accepted: pa.Array, n: int, seed: int) -> list[str]:
    """`n` accepted video ids drawn without replacement (seeded: the same report twice is the same)."""
    if n <= 0 or not len(accepted):
        return []
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(accepted), size=min(n, len(accepted)), replace=False)
    return pc.take(accepted, pa.array(np.sort(picks))).to_pylist()


def _rows(store: DatasetStore, config: str, columns: list[str], ids: pa.Array,
          where: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    out = []
    for batch in iter_batches(store, config, columns):
        mask = pc.is_in(batch.column("video_id"), value_set=ids)
        if where:
            mask = pc.and_(mask, pc.equal(batch.column(where[0]), where[1]))
        out.extend(batch.filter(mask).to_pylist())
    return out


def _span_times(start: float, end: float, n: int = SPAN_FRAMES) -> list[float]:
    """`n` times spread inside [start, end] (centres of n equal parts)."""
    width = max(0.0, end - start)
    return [round(start + width * (i + 0.5) / n, 1) for i in range(n)]


def _strip_scenes(scenes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(scenes) <= MAX_KEYFRAMES:
        return scenes
    picks = np.linspace(0, len(scenes) - 1, MAX_KEYFRAMES).round().astype(int)
    return [scenes[i] for i in sorted(set(picks.tolist()))]


def _item(row: dict[str, Any], decision: str, reason: str, message: str | None) -> dict[str, Any]:
    v = row.get("verification") or {}
    return {"id": row.get("id") or "", "video_id": row["video_id"], "category": row.get("category") or "?",
            "qa_type": row.get("qa_type") or "?", "format": row.get("format") or "?",
            "question": str(row.get("question") or ""), "options": list(row.get("options") or []),
            "answer": str(row.get("answer") or ""),
            "span": [row.get("evidence_start_s"), row.get("evidence_end_s")],
            "answers": list(v.get("answers") or []), "blind_answer": v.get("blind_answer"),
            "pass_rate": v.get("pass_rate"), "score": v.get("score"), "k": v.get("k"),
            "verifier": v.get("verifier"), "decision": decision, "reason": reason, "message": message}


def build_browser(store: DatasetStore, accepted: pa.Array, dest: Path, *, videos: int, seed: int) -> Browser:
    """Sample `videos` accepted videos, gather their items, decode their frames into `dest/frames/`."""
    browser = Browser()
    ids = sample_ids(accepted, videos, seed)
    if not ids:
        return browser
    id_set = pa.array(ids, pa.string())
    vrows = {r["video_id"]: r for r in _rows(store, "videos", [
        "video_id", "title", "source", "duration_s", "video_path", "media_uri", "num_scenes", "scenes"], id_set)}
    items: dict[str, list[dict[str, Any]]] = {v: [] for v in ids}
    for row in _rows(store, "sft", ["id", "video_id", "category", "qa_type", "format", "question", "options",
                                    "answer", "evidence_start_s", "evidence_end_s", "verification"], id_set):
        v = row.get("verification")
        items[row["video_id"]].append(_item(row, v["decision"] if v else "unverified",
                                            v["reason"] if v else "no verifier", None))
    for rej in _rows(store, "rejects", ["video_id", "target_config", "reason", "message", "row_json"], id_set,
                     where=("target_config", "qa")):
        try:
            raw = json.loads(rej["row_json"])
        except ValueError:
            raw = {}
        raw = raw if isinstance(raw, dict) else {}
        raw["video_id"] = rej["video_id"]
        verified = isinstance(raw.get("verification"), dict)
        items[rej["video_id"]].append(_item(raw, "reject" if verified else "refused", rej["reason"], rej["message"]))
    page: dict[str, Any] = {"videos": {}, "items": {}}
    for n, vid in enumerate(ids):
        video = vrows[vid]
        number = len(browser.pages)
        strip = _strip_scenes(video.get("scenes") or [])
        times = [s["keyframe_s"] for s in strip]
        for item in items[vid]:
            s, e = item["span"]
            item["times"] = _span_times(float(s), float(e)) if s is not None and e is not None else []
            times += item["times"]
        got = extract(video.get("video_path"), video.get("media_uri"), times, dest / "frames" / f"v{n:05d}",
                      f"frames/v{n:05d}")
        browser.frames_written += len(got.files)
        browser.media_notes += got.note is not None
        page["videos"][vid] = {
            "video_id": vid, "title": video.get("title") or video.get("source"), "duration_s": video.get("duration_s"),
            "num_scenes": video.get("num_scenes"), "media_note": got.note,
            "scenes": [{"start_s": s["start_s"], "end_s": s["end_s"], "keyframe_s": s["keyframe_s"],
                        "frame": got.files.get(round(s["keyframe_s"], 1))} for s in strip]}
        browser.index["videos"].append({"video_id": vid, "page": number, "items": len(items[vid])})
        if not items[vid]:  # listed anyway, so its keyframes can be seen (a dataset made without a teacher)
            browser.index["items"].append({"id": f"{vid}-video", "video_id": vid, "video": n, "page": number,
                                           "category": "-", "format": "-", "decision": "no QA",
                                           "reason": "no QA items for this video"})
        for k, item in enumerate(items[vid]):
            key = item["id"] or f"{vid}-r{k}"
            item["id"] = key
            item["frames"] = [{"t": t, "src": got.files.get(t)} for t in item.pop("times")]
            page["items"][key] = item
            browser.index["items"].append({"id": key, "video_id": vid, "video": n, "page": number,
                                           "category": item["category"],
                                           "format": item["format"], "decision": item["decision"],
                                           "reason": item["reason"]})
        if len(page["videos"]) == PAGE_VIDEOS or n == len(ids) - 1:
            browser.pages.append(page)
            page = {"videos": {}, "items": {}}
    return browser
