"""Exports into the formats the training stages read (DESIGN.md, "Downstream contracts").

xtuner (InternVideo3's SFT trainer): JSONL files of {"id", "messages"} plus a meta JSON
{name: {annotation, media_root, sample_ratio, fps}}. A sample that fails there is
silently replaced by an empty one, so every line is checked against the trainer's rules
before it is written; a failing line goes to `rejected.jsonl` with its problems.
verl (RL): one Parquet file of the `rl` rows plus a `videos` column.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.budget import ByteBound, HFTextCounter, TokenTally, XtunerSamples, XtunerSettings
from pipeline.store import DatasetStore
from pipeline.trainer_media import TrainerView, trainer_view

PLACEHOLDER = "<VIDEO_CONTEXT>"
DEFAULT_CAP = XtunerSettings().max_length  # the fork's long config: 262,144 tokens per sample
ROLES = {"system", "user", "assistant"}
MESSAGE_KEYS = {"role", "content"}
TEXT_KEYS = {"type", "text", "conversation_timestamps"}
VIDEO_KEYS = {"type", "video_url"}
VIDEO_URL_KEYS = {"url", "image_wh", "origin_video_length", "origin_fps"}


def _drop_nulls(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if v is not None}


def relative_media(url: str, row: dict[str, Any], media_root: str) -> str:
    """The path a trainer resolves under `media_root`: the shared copy's key in its store, or
    the local path relative to the root."""
    store = (row.get("media_store") or "").rstrip("/")
    if store and url.startswith(store + "/"):
        return url[len(store) + 1:]
    return os.path.relpath(url, media_root)


def to_xtuner(row: dict[str, Any], media_root: str) -> dict[str, Any]:
    """An `sft` row -> one xtuner JSONL object (video URL relative to the media root)."""
    messages = []
    for m in row["messages"]:
        content = []
        for item in m["content"]:
            item = _drop_nulls(item)
            if item.get("type") == "video_url":
                url = dict(item["video_url"])
                url["url"] = relative_media(url["url"], row, media_root)
                item["video_url"] = url
            content.append(item)
        messages.append({"role": m["role"], "content": content})
    return {"id": row["id"], "messages": messages}


def check_xtuner(obj: dict[str, Any], media_root: str, media: "MediaFacts | None" = None,
                 uri: str | None = None) -> list[str]:
    """Every rule of DESIGN.md's SFT contract that a line breaks (empty: the line is good)."""
    problems: list[str] = []
    if set(obj) - {"id", "messages"}:
        problems.append(f"unknown top-level keys {sorted(set(obj) - {'id', 'messages'})}")
    messages = obj.get("messages") or []
    roles = [m.get("role") for m in messages]
    if not messages or roles[-1] != "assistant" or "user" not in roles:
        problems.append(f"needs user then assistant turns, got {roles}")
    videos = 0
    for i, m in enumerate(messages):
        if set(m) - MESSAGE_KEYS:
            problems.append(f"message {i}: unknown keys {sorted(set(m) - MESSAGE_KEYS)}")
        if m.get("role") not in ROLES:
            problems.append(f"message {i}: role {m.get('role')!r}")
        content = m.get("content")
        if not isinstance(content, list) or not content:
            problems.append(f"message {i}: content must be a non-empty list")
            continue
        for j, item in enumerate(content):
            kind = item.get("type")
            allowed = VIDEO_KEYS if kind == "video_url" else TEXT_KEYS if kind == "text" else None
            if allowed is None:
                problems.append(f"message {i} item {j}: type {kind!r} (images and videos must not mix)")
                continue
            if set(item) - allowed:
                problems.append(f"message {i} item {j}: unknown keys {sorted(set(item) - allowed)}")
            if kind == "text" and not isinstance(item.get("text"), str):
                problems.append(f"message {i} item {j}: text missing")
            if kind == "video_url":
                videos += 1
                problems += _check_video(i, j, item.get("video_url") or {}, content, media_root, media, uri)
        if m.get("role") == "assistant" and not any(c.get("type") == "text" and c.get("text") for c in content):
            problems.append(f"message {i}: assistant turn has no text")
    if videos != 1:
        problems.append(f"expected exactly one video, found {videos}")
    return problems


def _check_video(i: int, j: int, url: dict[str, Any], content: list[dict], media_root: str,
                 media: "MediaFacts | None", uri: str | None) -> list[str]:
    where = f"message {i} item {j}"
    problems = []
    if set(url) != VIDEO_URL_KEYS:
        problems.append(f"{where}: video_url keys must be {sorted(VIDEO_URL_KEYS)}, got {sorted(url)}")
        return problems
    wh, length, fps = url["image_wh"], url["origin_video_length"], url["origin_fps"]
    if not (isinstance(wh, list) and len(wh) == 2 and all(isinstance(x, int) and x > 0 for x in wh)):
        problems.append(f"{where}: image_wh must be [W, H] integers, got {wh}")
    if not isinstance(length, int) or length < 1:
        problems.append(f"{where}: origin_video_length must be a frame count, got {length!r}")
    if not isinstance(fps, (int, float)) or fps <= 0:
        problems.append(f"{where}: origin_fps must be positive, got {fps!r}")
    if url["url"].startswith("..") or os.path.isabs(url["url"]):
        problems.append(f"{where}: video {url['url']} is not under media_root {media_root}")
    texts = [c for c in content if c.get("type") == "text"]
    if not texts or not str(texts[0].get("text", "")).startswith(PLACEHOLDER):
        problems.append(f"{where}: the text after the video must start with {PLACEHOLDER}")
    if media is not None and not problems:
        view = media.get(os.path.join(media_root, url["url"]), uri)
        if view is None:
            problems.append(f"{where}: video {url['url']} cannot be opened by the trainer's reader (decord)")
        else:
            if list(wh) != [view.width, view.height]:
                problems.append(f"{where}: image_wh {wh} != decoded frame size {[view.width, view.height]}")
            if length > view.frames:
                problems.append(f"{where}: origin_video_length {length} > decoded frames {view.frames}")
            # the trainer puts frame i at i / origin_fps: the last frame must land where decord has it
            if isinstance(fps, (int, float)) and fps > 0 and view.frames > 1:
                at = (view.frames - 1) / fps
                if abs(at - view.last_frame_s) > max(0.5, 0.02 * view.last_frame_s):
                    problems.append(f"{where}: origin_fps {fps} puts the last frame at {at:.2f} s, the file has it "
                                    f"at {view.last_frame_s:.2f} s (use the average rate, frames / duration)")
    return problems


@dataclass
class MediaFacts:
    """The trainer's view (decord) of each video, probed once: the file under the media root, or
    the shared copy (`uri`, read through fsspec) when the root is not mounted here."""

    cache: dict[str, TrainerView | None] = field(default_factory=dict)

    def get(self, path: str, uri: str | None = None) -> TrainerView | None:
        if path not in self.cache:
            if os.path.exists(path) or not uri:
                self.cache[path] = trainer_view(path)
            else:
                import fsspec

                self.cache[path] = trainer_view(uri, opener=lambda: fsspec.open(uri, "rb").open())
        return self.cache[path]


@dataclass
class ExportReport:
    written: Counter = field(default_factory=Counter)
    rejected: int = 0
    problems: Counter = field(default_factory=Counter)
    files: list[str] = field(default_factory=list)
    tokens: TokenTally = field(default_factory=TokenTally)  # the written samples' tokens, frames, frame sizes
    exact_text: bool = False  # text counted with the model's tokenizer (else a byte upper bound)


def default_media_root(rows: Iterable[dict[str, Any]]) -> str:
    """The shared store when every row has its copy there (and it is a path), else the common
    parent of the local files. `rows` need only `media_store` and `video_path`, and are read once."""
    stores: set = set()
    common: str | None = None
    for r in rows:
        stores.add(r.get("media_store"))
        parent = os.path.dirname(r["video_path"])
        common = parent if common is None else os.path.commonpath([common, parent])
    if len(stores) == 1 and None not in stores:
        (store,) = stores
        if "://" in store and not store.startswith("file://"):
            raise ValueError(f"the videos are in {store}: pass --media-root, the path where the trainer's "
                             "nodes mount that store")
        return store.removeprefix("file://")
    return os.path.commonpath([common]) if common is not None else "/"


def store_rows(store: DatasetStore, config: str, columns: list[str]) -> Iterator[dict[str, Any]]:
    """The committed rows of a config as dicts of `columns`, one record batch in memory at a time."""
    for batch in store.iter_batches(config, columns):
        yield from batch.to_pylist()


_XTUNER_COLUMNS = ["id", "category", "messages", "media_store", "media_uri"]


def export_xtuner(out: str, dest: str | Path, *, media_root: str | None = None, name: str = "longvideo",
                  fps: float = 4, check_media: bool = True, split_by_category: bool = True,
                  max_tokens: int = DEFAULT_CAP, max_frames: int = 2048, tokenizer: str | None = None) -> ExportReport:
    """Write xtuner JSONL (one file per category) + meta JSON from the dataset's `sft` rows.

    Each meta entry carries the fork's per-dataset settings (fps, frame limits, and a
    `video_max_total_pixels` lowered so that every sample of that file stays within `max_tokens`,
    counted the fork's way: `pipeline.budget`); `DEST/tokens.jsonl` says, per sample, the frames and
    frame size the trainer will use and its tokens.

    Two passes over the store's record batches, lines written as they come: the first checks each
    line and keeps what the fit needs (`XtunerSamples`), the second writes. What grows with the
    dataset: 32 bytes a sample for the fit, 8 for the token summary, 1 for the checked mask (~0.4 KB
    a video at 10 samples a video), plus the trainer's view of each video probed (`MediaFacts`, ~0.2 KB)."""
    store = DatasetStore(out)
    if media_root is None:
        media_root = default_media_root(store_rows(store, "sft", ["media_store", "video_path"]))
    dest = Path(dest)
    (dest / "annotations").mkdir(parents=True, exist_ok=True)
    media = MediaFacts() if check_media else None
    report = ExportReport()
    counter = HFTextCounter(tokenizer) if tokenizer else ByteBound()
    base = XtunerSettings(fps=fps, video_max_frames=max_frames, max_length=max_tokens)
    group_of = (lambda row: f"{name}_{row['category']}") if split_by_category else (lambda row: name)
    groups: dict[str, XtunerSamples] = {}
    good = bytearray()  # per sft row: passed the trainer's rules
    with _Lines(dest / "rejected.jsonl") as rejected:
        for row in store_rows(store, "sft", _XTUNER_COLUMNS):
            obj = to_xtuner(row, media_root)
            problems = check_xtuner(obj, media_root, media, uri=row.get("media_uri"))
            good.append(not problems)
            if problems:
                _reject(report, rejected, row["id"], problems)
                continue
            group = group_of(row)
            if group not in groups:
                groups[group] = XtunerSamples(base, max_tokens, counter)
            groups[group].add(obj["messages"])
        settings = {group: samples.fit() for group, samples in groups.items()}
        order = sorted(groups)
        over = {group: _Lines(dest / f".rejected-{i}.jsonl") for i, group in enumerate(order)}
        tokens = {group: _Lines(dest / f".tokens-{i}.jsonl") for i, group in enumerate(order)}
        lines = {group: _Lines(dest / "annotations" / f"{group}.jsonl") for group in order}
        seen: Counter = Counter()
        for row, ok in zip(store_rows(store, "sft", _XTUNER_COLUMNS), good):
            if not ok:
                continue
            group = group_of(row)
            c = groups[group].count(seen[group], settings[group])
            seen[group] += 1
            if c.over(max_tokens):
                _reject(report, over[group], row["id"], [c.error or f"tokens: {c.total_tokens} > the trainer's cap "
                                                           f"{max_tokens} even at the smallest frames"])
                continue
            lines[group].write(to_xtuner(row, media_root))
            report.tokens.add(c)
            tokens[group].write({"id": row["id"], "group": group, "frames": c.frames, "frame_wh": [c.width, c.height],
                                 "video_tokens": c.video_tokens, "tokens": c.total_tokens})
        meta = {}
        with _Lines(dest / "tokens.jsonl") as all_tokens:
            for group in order:
                rejected.append_file(over[group].close())
                all_tokens.append_file(tokens[group].close())
                path = lines[group].close()
                if not lines[group].count:
                    path.unlink()
                    continue
                report.written[group] = lines[group].count
                report.files.append(str(path))
                meta[group] = {"annotation": str(path.resolve()), "media_root": media_root, "sample_ratio": 1.0,
                               **settings[group].meta()}
    if not report.rejected:
        (dest / "rejected.jsonl").unlink()
    (dest / "meta.json").write_text(json.dumps(meta, indent=2))
    report.exact_text = counter.exact
    return report


class _Lines:
    """A JSONL file written a line at a time, moved into place when closed (as `write_lines`)."""

    def __init__(self, path: Path) -> None:
        self.path, self.count = path, 0
        self.tmp = path.with_suffix(path.suffix + ".tmp")
        self.fh = open(self.tmp, "w")

    def write(self, obj: dict[str, Any]) -> None:
        self.fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.count += 1

    def append_file(self, path: Path) -> None:
        """Copy another `_Lines` file's lines here (and delete it)."""
        with open(path) as fh:
            for line in fh:
                self.fh.write(line)
                self.count += 1
        path.unlink()

    def close(self) -> Path:
        if not self.fh.closed:
            self.fh.close()
            os.replace(self.tmp, self.path)
        return self.path

    def __enter__(self) -> "_Lines":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _reject(report: ExportReport, rejected: _Lines, item: str, problems: list[str]) -> None:
    report.rejected += 1
    report.problems.update(p.split(":")[-1].strip().split(" ")[0] if not p.startswith("tokens:") else "over_token_cap"
                           for p in problems)
    rejected.write({"id": item, "problems": problems})


VERL_MAX_PROMPT_LENGTH = 16384  # what `curate export verl` budgets for (data.max_prompt_length)


def export_verl(out: str, dest: str | Path, *, max_prompt_length: int = VERL_MAX_PROMPT_LENGTH, fps: float = 2.0,
                max_frames: int = 128, patch_size: int = 14, tokenizer: str | None = None) -> int:
    """Write the `rl` rows as one verl Parquet file (with a `videos` column); returns rows.

    Each video entry carries qwen-vl-utils' limits (fps, frames, pixels per frame, total pixels),
    chosen so that the prompt verl tokenizes stays within `max_prompt_length` (`pipeline.budget`).
    The video is the shared copy when there is one (verl reads it through its own IO).

    Streamed: each `rl` record batch is joined to its videos' facts and appended to the file. What
    grows with the dataset: the facts lookup, five Arrow columns of `videos` (~40 bytes a video)."""
    import pyarrow.compute as pc

    from pipeline.budget import QwenVideoSettings, VideoFacts, fit_qwen
    from pipeline.export_qwen import QWEN_SYSTEM

    store = DatasetStore(out)
    facts = store.read_table("videos", list(_FACT_COLUMNS))
    counter = HFTextCounter(tokenizer) if tokenizer else ByteBound()
    base = QwenVideoSettings(fps=fps, max_frames=max_frames, patch_size=patch_size)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rows, writer, kind = 0, None, None
    try:
        for batch in store.iter_batches("rl"):
            if not batch.num_rows:
                continue
            infos, prompts = batch.column("extra_info").to_pylist(), batch.column("prompt").to_pylist()
            at = pc.index_in(pa.array([i["video_id"] for i in infos], pa.string()), value_set=facts["video_id"])
            videos = []
            for info, prompt, v in zip(infos, prompts, facts.take(at).to_pylist()):
                entry: dict[str, Any] = {"video": info.get("media_uri") or info["video_path"]}
                if v.get("frame_count") and v.get("fps") and v.get("width") and v.get("height"):
                    text = QWEN_SYSTEM + "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in prompt)
                    settings, _ = fit_qwen(VideoFacts(v["width"], v["height"], v["frame_count"], v["fps"]), base,
                                           max_prompt_length, text + "<|im_start|>assistant\n", counter)
                    entry.update(settings.entry())
                else:
                    entry.update(base.entry())
                videos.append([entry])
            column = pa.array(videos, kind)
            kind = column.type
            table = pa.Table.from_batches([batch]).append_column("videos", column)
            if writer is None:
                writer = pq.ParquetWriter(dest / "train.parquet.tmp", table.schema)
            writer.write_table(table)
            rows += table.num_rows
        if writer is None:  # no rows: the columns' types from the store, an empty `videos`
            pq.write_table(store.read_table("rl").append_column("videos", pa.array([])), dest / "train.parquet.tmp")
    finally:
        if writer is not None:
            writer.close()
    os.replace(dest / "train.parquet.tmp", dest / "train.parquet")
    return rows


_FACT_COLUMNS = ("video_id", "width", "height", "frame_count", "fps")


def write_lines(path: Path, objs: Iterable[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        for obj in objs:
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
