"""Exports for the Qwen-VL family of trainers, each sample within a token budget.

- `qwen`: JSONL of `{"id", "messages"}` with `{"type": "video", "video": path, "fps", "min_frames",
  "max_frames", "min_pixels", "max_pixels", "total_pixels"}` items: what qwen-vl-utils'
  `process_vision_info` reads (and with it ms-swift and the Qwen fine-tuning scripts). The limits
  travel in each video item, so every sample gets its own (`pipeline.budget.fit_qwen`).
- `llamafactory`: LLaMA-Factory's sharegpt-style `{"messages", "videos"}` JSONL with `<video>` in
  the user turn, its `dataset_info.json` entry, and `llamafactory_args.yaml`: LLaMA-Factory reads
  its video limits per run (`video_fps`, `video_maxlen`, `video_max_pixels`, `cutoff_len`), so one
  per-frame pixel limit is chosen that keeps the largest sample within the cap.
- verl (`export_verl` in pipeline/export.py) uses the same qwen-vl-utils budget per video entry.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from pipeline.budget import (ByteBound, Count, HFTextCounter, QwenVideoSettings, TokenTally, VideoFacts, count_qwen,
                             fit_qwen)
from pipeline.export import _Lines, store_rows, write_lines
from pipeline.store import DatasetStore

QWEN_SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


@dataclass
class QwenExportReport:
    written: int = 0
    rejected: list[dict] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    tally: TokenTally = field(default_factory=TokenTally)  # the written samples' tokens, frames and sizes
    dest: Path | None = None

    @property
    def tokens(self) -> list[dict]:
        """Per written sample its frames, frame size and tokens: DEST/tokens.jsonl, read when asked."""
        if self.dest is None or not (self.dest / "tokens.jsonl").exists():
            return []
        with open(self.dest / "tokens.jsonl") as fh:
            return [json.loads(line) for line in fh]


_COLUMNS = ["id", "messages", "width", "height", "frame_count", "fps", "media_uri", "video_path"]


def _facts(row: dict[str, Any]) -> VideoFacts:
    return VideoFacts(int(row["width"]), int(row["height"]), int(row["frame_count"]), float(row["fps"]))


def _media(row: dict[str, Any]) -> str:
    return row.get("media_uri") or row["video_path"]


def _turns(row: dict[str, Any]) -> tuple[str | None, str, str]:
    """(system, question text without the video placeholder, answer) of an sft row."""
    system, question, answer = None, "", ""
    for m in row["messages"]:
        text = "".join(c.get("text") or "" for c in m["content"] if c.get("type") == "text")
        if m["role"] == "system":
            system = text
        elif m["role"] == "user":
            question = text.replace("<VIDEO_CONTEXT>", "", 1).lstrip("\n")
        else:
            answer = text
    return system, question, answer


def _chat_text(system: str | None, question: str, answer: str) -> str:
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else QWEN_SYSTEM
    return f"{head}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n"


def _count_row(row: dict[str, Any], s: QwenVideoSettings, text) -> Count:
    return count_qwen(_facts(row), s, _chat_text(*_turns(row)), text)


def export_qwen(out: str, dest: str | Path, *, max_tokens: int = 262144, fps: float = 2.0, max_frames: int = 768,
                patch_size: int = 14, tokenizer: str | None = None) -> QwenExportReport:
    """`DEST/qwen.jsonl`: Qwen-VL-style messages, each video item with the limits that fit `max_tokens`.
    Streamed: one record batch of `sft` rows in memory, lines written as they come (what grows with
    the dataset: 8 bytes a sample for the token summary, and the rejected samples' reasons)."""
    text = HFTextCounter(tokenizer) if tokenizer else ByteBound()
    base = QwenVideoSettings(fps=fps, max_frames=max_frames, patch_size=patch_size)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    report = QwenExportReport(dest=dest)
    with _Lines(dest / "qwen.jsonl") as lines, _Lines(dest / "tokens.jsonl") as tokens:
        for row in store_rows(DatasetStore(out), "sft", _COLUMNS):
            system, question, answer = _turns(row)
            settings, c = fit_qwen(_facts(row), base, max_tokens, _chat_text(system, question, answer), text)
            if c.over(max_tokens):
                report.rejected.append({"id": row["id"], "problems": [c.error or f"tokens: {c.total_tokens} > {max_tokens}"]})
                continue
            video = {"type": "video", "video": _media(row), **settings.entry()}
            messages = ([{"role": "system", "content": [{"type": "text", "text": system}]}] if system else [])
            messages += [{"role": "user", "content": [video, {"type": "text", "text": question}]},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
            lines.write({"id": row["id"], "messages": messages})
            tokens.write(_token_line(row["id"], c))
            report.tally.add(c)
    report.written, report.files = lines.count, [str(dest / "qwen.jsonl")]
    _finish(dest, report)
    return report


def export_llamafactory(out: str, dest: str | Path, *, max_tokens: int = 262144, fps: float = 2.0,
                        max_frames: int = 768, patch_size: int = 14, name: str = "longvideo",
                        tokenizer: str | None = None) -> QwenExportReport:
    """`DEST/<name>.jsonl` + `DEST/dataset_info.json` + `DEST/llamafactory_args.yaml` for LLaMA-Factory.

    Its video limits are per run, so the per-frame pixel limit is the one that fits the largest
    sample; rows that fit at no size are rejected. Two passes over the `sft` record batches (the
    limit, then the lines), nothing kept per sample but its token count (8 bytes)."""
    store = DatasetStore(out)
    text = HFTextCounter(tokenizer) if tokenizer else ByteBound()
    base = QwenVideoSettings(fps=fps, max_frames=max_frames, patch_size=patch_size)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    report = QwenExportReport(dest=dest)
    f2 = base.factor ** 2
    per_frame = 768 * f2
    for r in store_rows(store, "sft", _COLUMNS):
        s, c = fit_qwen(_facts(r), base, max_tokens, _chat_text(*_turns(r)), text)
        if not c.over(max_tokens) and s.max_pixels is not None:
            per_frame = min(per_frame, s.max_pixels)
    run = replace(base, max_pixels=per_frame, min_pixels=min(128 * f2, int(per_frame / 1.05)),
                  total_pixels=per_frame * base.max_frames)
    with _Lines(dest / f"{name}.jsonl") as lines, _Lines(dest / "tokens.jsonl") as tokens:
        for row in store_rows(store, "sft", _COLUMNS):
            c = _count_row(row, run, text)
            if c.over(max_tokens):
                report.rejected.append({"id": row["id"], "problems": [c.error or f"tokens: {c.total_tokens} > {max_tokens}"]})
                continue
            system, question, answer = _turns(row)
            line = {"messages": [{"role": "user", "content": f"<video>{question}"},
                                 {"role": "assistant", "content": answer}], "videos": [_media(row)]}
            if system:
                line["system"] = system
            lines.write(line)
            tokens.write(_token_line(row["id"], c))
            report.tally.add(c)
    columns = {"messages": "messages", "videos": "videos", "system": "system"}
    info = {name: {"file_name": f"{name}.jsonl", "formatting": "sharegpt", "columns": columns,
                   "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                            "assistant_tag": "assistant"}}}
    (dest / "dataset_info.json").write_text(json.dumps(info, indent=2))
    args = {"dataset_dir": str(dest.resolve()), "dataset": name, "cutoff_len": max_tokens, "video_fps": fps,
            "video_maxlen": max_frames, "video_max_pixels": int(per_frame),
            "video_min_pixels": int(run.min_pixels or 0)}
    (dest / "llamafactory_args.yaml").write_text(yaml.safe_dump(args, sort_keys=False))
    report.written, report.files = lines.count, [str(dest / f"{name}.jsonl")]
    _finish(dest, report)
    return report


def _token_line(item: str, c: Count) -> dict[str, Any]:
    return {"id": item, "frames": c.frames, "frame_wh": [c.width, c.height], "video_tokens": c.video_tokens,
            "tokens": c.total_tokens}


def _finish(dest: Path, report: QwenExportReport) -> None:
    if report.rejected:
        write_lines(dest / "rejected.jsonl", report.rejected)
