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

from pipeline.budget import (ByteBound, Count, HFTextCounter, QwenVideoSettings, VideoFacts, count_qwen,
                             fit_qwen)
from pipeline.export import write_lines
from pipeline.store import DatasetStore

QWEN_SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


@dataclass
class QwenExportReport:
    written: int = 0
    rejected: list[dict] = field(default_factory=list)
    tokens: list[dict] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


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
    """`DEST/qwen.jsonl`: Qwen-VL-style messages, each video item with the limits that fit `max_tokens`."""
    rows = DatasetStore(out).read_table("sft").to_pylist()
    text = HFTextCounter(tokenizer) if tokenizer else ByteBound()
    base = QwenVideoSettings(fps=fps, max_frames=max_frames, patch_size=patch_size)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    report, lines = QwenExportReport(), []
    for row in rows:
        system, question, answer = _turns(row)
        settings, c = fit_qwen(_facts(row), base, max_tokens, _chat_text(system, question, answer), text)
        if c.over(max_tokens):
            report.rejected.append({"id": row["id"], "problems": [c.error or f"tokens: {c.total_tokens} > {max_tokens}"]})
            continue
        video = {"type": "video", "video": _media(row), **settings.entry()}
        messages = ([{"role": "system", "content": [{"type": "text", "text": system}]}] if system else [])
        messages += [{"role": "user", "content": [video, {"type": "text", "text": question}]},
                     {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        lines.append({"id": row["id"], "messages": messages})
        report.tokens.append(_token_line(row["id"], c))
    write_lines(dest / "qwen.jsonl", lines)
    report.written, report.files = len(lines), [str(dest / "qwen.jsonl")]
    _finish(dest, report)
    return report


def export_llamafactory(out: str, dest: str | Path, *, max_tokens: int = 262144, fps: float = 2.0,
                        max_frames: int = 768, patch_size: int = 14, name: str = "longvideo",
                        tokenizer: str | None = None) -> QwenExportReport:
    """`DEST/<name>.jsonl` + `DEST/dataset_info.json` + `DEST/llamafactory_args.yaml` for LLaMA-Factory.

    Its video limits are per run, so the per-frame pixel limit is the one that fits the largest
    sample; rows that fit at no size are rejected."""
    rows = DatasetStore(out).read_table("sft").to_pylist()
    text = HFTextCounter(tokenizer) if tokenizer else ByteBound()
    base = QwenVideoSettings(fps=fps, max_frames=max_frames, patch_size=patch_size)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    report = QwenExportReport()
    fitted = [fit_qwen(_facts(r), base, max_tokens, _chat_text(*_turns(r)), text) for r in rows]
    limits = [s.max_pixels for s, c in fitted if not c.over(max_tokens) and s.max_pixels is not None]
    f2 = base.factor ** 2
    per_frame = min(limits + [768 * f2])
    run = replace(base, max_pixels=per_frame, min_pixels=min(128 * f2, int(per_frame / 1.05)),
                  total_pixels=per_frame * base.max_frames)
    lines = []
    for row in rows:
        c = _count_row(row, run, text)
        if c.over(max_tokens):
            report.rejected.append({"id": row["id"], "problems": [c.error or f"tokens: {c.total_tokens} > {max_tokens}"]})
            continue
        system, question, answer = _turns(row)
        line = {"messages": [{"role": "user", "content": f"<video>{question}"},
                             {"role": "assistant", "content": answer}], "videos": [_media(row)]}
        if system:
            line["system"] = system
        lines.append(line)
        report.tokens.append(_token_line(row["id"], c))
    write_lines(dest / f"{name}.jsonl", lines)
    columns = {"messages": "messages", "videos": "videos", "system": "system"}
    info = {name: {"file_name": f"{name}.jsonl", "formatting": "sharegpt", "columns": columns,
                   "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                            "assistant_tag": "assistant"}}}
    (dest / "dataset_info.json").write_text(json.dumps(info, indent=2))
    args = {"dataset_dir": str(dest.resolve()), "dataset": name, "cutoff_len": max_tokens, "video_fps": fps,
            "video_maxlen": max_frames, "video_max_pixels": int(per_frame),
            "video_min_pixels": int(run.min_pixels or 0)}
    (dest / "llamafactory_args.yaml").write_text(yaml.safe_dump(args, sort_keys=False))
    report.written, report.files = len(lines), [str(dest / f"{name}.jsonl")]
    _finish(dest, report)
    return report


def _token_line(item: str, c: Count) -> dict[str, Any]:
    return {"id": item, "frames": c.frames, "frame_wh": [c.width, c.height], "video_tokens": c.video_tokens,
            "tokens": c.total_tokens}


def _finish(dest: Path, report: QwenExportReport) -> None:
    write_lines(dest / "tokens.jsonl", report.tokens)
    if report.rejected:
        write_lines(dest / "rejected.jsonl", report.rejected)
