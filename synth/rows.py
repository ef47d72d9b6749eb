"""QA items -> output rows in the formats the training stages read (see DESIGN.md).

SFT: chat messages in InternVideo3's xtuner format (a `video_url` item with image_wh,
origin_video_length as a frame count and origin_fps, then `<VIDEO_CONTEXT>` text).
RL: verl-style rows with rule rewards (temporal IoU for grounding, option letter for
multiple choice). Provenance (teacher, prompt version) travels with every row.
"""
from __future__ import annotations

import json
from typing import Any

from pipeline.records import VideoTask
from synth.evaluator import MC_SUFFIX
from synth.items import QAItem
from synth.taxonomy import LETTERS

VIDEO_PLACEHOLDER = "<VIDEO_CONTEXT>"
RL_VIDEO_TOKEN = "<video>"


def item_id(task: VideoTask, item: QAItem) -> str:
    return f"{task.video_id}-{item.source[0]}{item.index:03d}"


def question_text(item: QAItem) -> str:
    """What the model is asked: the question, plus lettered options for multiple choice."""
    if item.format != "multiple_choice":
        return item.question
    lines = [item.question] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(item.options)] + [MC_SUFFIX]
    return "\n".join(lines)


def answer_text(item: QAItem) -> str:
    if item.format == "multiple_choice":
        return f"{item.answer_letter}. {item.answer}"
    return item.answer


def _text(text: str, timestamps: list[float] | None = None) -> dict[str, Any]:
    return {"type": "text", "text": text, "video_url": None, "conversation_timestamps": timestamps}


def media_reference(task: VideoTask) -> str:
    """What a trainer is pointed at: the shared copy when there is one, else the local file."""
    return task.media_uri or task.video_path or ""


def sft_messages(task: VideoTask, item: QAItem, system: str | None = None) -> list[dict[str, Any]]:
    video = {"type": "video_url", "text": None, "conversation_timestamps": None,
             "video_url": {"url": media_reference(task), "image_wh": [task.width, task.height],
                           "origin_video_length": task.frame_count, "origin_fps": task.fps}}
    messages = []
    if system:
        messages.append({"role": "system", "content": [_text(system)]})
    messages.append({"role": "user", "content": [video, _text(f"{VIDEO_PLACEHOLDER}\n{question_text(item)}")]})
    messages.append({"role": "assistant", "content": [_text(answer_text(item))]})
    return messages


def qa_fields(task: VideoTask, item: QAItem, teacher: str) -> dict[str, Any]:
    """The columns shared by `sft` and `distill` rows."""
    return {
        "id": item_id(task, item), "video_id": task.video_id, "video_path": task.video_path,
        "media_store": task.media_store, "media_uri": task.media_uri,
        "duration_s": float(task.duration_s or 0.0), "frame_count": task.frame_count, "fps": task.fps,
        "width": task.width, "height": task.height, "category": item.category, "qa_type": item.qa_type,
        "format": item.format, "question": item.question, "options": list(item.options),
        "answer": item.answer, "evidence_start_s": item.evidence_start_s, "evidence_end_s": item.evidence_end_s,
        "teacher": teacher, "verifier": None, "prompt_version": item.prompt_version,
    }


def sft_row(task: VideoTask, item: QAItem, teacher: str, system: str | None = None) -> dict[str, Any]:
    return {**qa_fields(task, item, teacher), "messages": sft_messages(task, item, system)}


def rl_row(task: VideoTask, item: QAItem, difficulty: float | None = None) -> dict[str, Any] | None:
    """A verl row for items with a rule reward; None for open-ended items."""
    if item.format == "grounding":
        kind = "temporal_iou"
        truth = json.dumps([item.evidence_start_s, item.evidence_end_s])
        ability = "temporal_grounding"
    elif item.format == "multiple_choice":
        kind = "option_letter"
        truth = item.answer_letter
        ability = "video_multiple_choice"
    else:
        return None
    return {
        "data_source": f"longvideo-curation/{item.source}/{item.qa_type}",
        "prompt": [{"role": "user", "content": f"{RL_VIDEO_TOKEN}\n{question_text(item)}"}],
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": truth},
        "extra_info": {"id": item_id(task, item), "video_id": task.video_id, "video_path": task.video_path,
                       "media_store": task.media_store, "media_uri": task.media_uri,
                       "duration_s": float(task.duration_s or 0.0), "reward_kind": kind, "difficulty": difficulty},
        "video_id": task.video_id,
    }


def reject_row(task: VideoTask, reason: str, message: str, raw: Any) -> dict[str, Any]:
    """A `rejects` row for a QA item the filters refused (provenance is added at commit)."""
    return {"video_id": task.video_id, "target_config": "qa", "reason": reason, "path": "$",
            "message": message[:2000], "row_json": json.dumps(raw, default=str)[:20000]}
