"""A synthesized QA item, and turning a teacher's JSON into checked items.

Row-level problems are data: every raw item ends as a kept `QAItem` or a `RejectedItem`
with a reason from `ItemReason`. Trivial formatting is repaired (a letter given instead
of the option text, options prefixed "A. ", spans as strings or reversed, category
spelled differently); anything else is rejected.
"""
from __future__ import annotations

import re
from typing import Any

from pipeline.records import QAItem, RejectedItem
from synth.evaluator import format_span, grounding_question, mentions_time, snap_span
from synth.taxonomy import CATEGORIES, FORMATS, LETTERS, TYPE_TO_CATEGORY, ItemReason

SPAN_TOLERANCE_S = 0.5
_HEDGE = re.compile(r"\b(not (shown|visible|mentioned|specified|stated|clear|provided)|cannot be (determined|seen|known)|"
                    r"can't (tell|be determined)|unclear|no information|impossible to (tell|determine)|unknown|"
                    r"not enough information)\b", re.IGNORECASE)
_OPTION_PREFIX = re.compile(r"^\s*\(?([A-Da-d])[\).:]\s+")
_WORD = re.compile(r"[a-z0-9]+")


def _norm_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _category_for(raw_category: Any, qa_type: str) -> str | None:
    if isinstance(raw_category, str):
        key = raw_category.strip().lower().replace("-", "_").replace(" ", "_").replace("/", "_")
        aliases = {"perception_and_recognition": "perception", "spatial_temporal": "spatio_temporal",
                   "spatiotemporal": "spatio_temporal", "event": "event_action",
                   "event_and_action_reasoning": "event_action", "holistic_semantics": "holistic"}
        key = aliases.get(key, key)
        if key in CATEGORIES:
            return key
    return TYPE_TO_CATEGORY.get(qa_type)


def _span(value: Any) -> tuple[float, float] | None:
    if isinstance(value, str):
        nums = re.findall(r"-?\d+(?:\.\d+)?", value)
        value = nums[:2]
    if isinstance(value, dict):
        value = [value.get("start"), value.get("end")]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    try:
        a, b = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        return None
    return (min(a, b), max(a, b))


def check_item(raw: Any, duration_s: float, prompt_version: str) -> QAItem | RejectedItem:
    """Validate and repair one raw item from the teacher."""
    if not isinstance(raw, dict):
        return RejectedItem(ItemReason.unparseable, f"item is {type(raw).__name__}, not an object", raw)
    grounding = str(raw.get("format") or "").strip().lower() in ("grounding", "temporal_grounding")
    needed = ("answer", "format") if grounding else ("question", "answer", "format")  # grounding: a query
    missing = [k for k in needed if not str(raw.get(k) or "").strip()]
    if "evidence" not in raw and not grounding:
        missing.append("evidence")
    if missing:
        return RejectedItem(ItemReason.missing_field, f"missing {', '.join(missing)}", raw)
    fmt = str(raw["format"]).strip().lower().replace("-", "_").replace(" ", "_")
    fmt = {"mcq": "multiple_choice", "mc": "multiple_choice", "open": "open_ended",
           "temporal_grounding": "grounding"}.get(fmt, fmt)
    if fmt not in FORMATS or fmt == "description":
        return RejectedItem(ItemReason.invalid_value, f"unknown format {raw['format']!r}", raw)
    qa_type = str(raw.get("type") or "").strip().lower().replace(" ", "_").replace("-", "_")
    category = _category_for(raw.get("category"), qa_type)
    if category is None:
        return RejectedItem(ItemReason.invalid_value, f"unknown category {raw.get('category')!r}", raw)
    if qa_type not in CATEGORIES[category]:
        qa_type = qa_type or "unspecified"
    question = " ".join(str(raw.get("question") or "").split())
    answer = " ".join(str(raw["answer"]).split()) if not isinstance(raw["answer"], list) else raw["answer"]
    span = _span(raw.get("evidence") if raw.get("evidence") is not None else raw.get("answer"))
    if span is None:
        return RejectedItem(ItemReason.missing_field, "evidence span is not [start, end]", raw)
    if span[0] < -SPAN_TOLERANCE_S or span[1] > duration_s + SPAN_TOLERANCE_S or span[1] - span[0] <= 0:
        return RejectedItem(ItemReason.span_out_of_range,
                            f"evidence {list(span)} outside 0-{duration_s:.1f} s or empty", raw)
    options: list[str] = []
    query: str | None = None
    if fmt == "grounding":
        target = _span(raw["answer"]) or span
        if target[0] < -SPAN_TOLERANCE_S or target[1] > duration_s + SPAN_TOLERANCE_S or target[1] <= target[0]:
            return RejectedItem(ItemReason.span_out_of_range, f"answer span {list(target)} outside the video", raw)
        span = target
        query = " ".join(str(raw.get("query") or "").split()).strip('"')
        if not query:
            return RejectedItem(ItemReason.missing_field, "a grounding item needs a query (what the moment shows)", raw)
        if mentions_time(query):
            return RejectedItem(ItemReason.time_in_query, f"the query says when: {query!r}", raw)
        question = grounding_question(duration_s, query)
    snapped = snap_span(*span, duration_s)
    if snapped is None:
        return RejectedItem(ItemReason.span_out_of_range, f"span {list(span)} is empty at 0.1 s", raw)
    span = snapped
    if fmt == "grounding":
        answer = format_span(*span)
    elif fmt == "multiple_choice":
        raw_options = raw.get("options")
        if not isinstance(raw_options, list) or len(raw_options) != 4:
            return RejectedItem(ItemReason.missing_field, "multiple choice needs exactly 4 options", raw)
        options = [_OPTION_PREFIX.sub("", " ".join(str(o).split())) for o in raw_options]
        if len({o.lower() for o in options}) != 4:
            return RejectedItem(ItemReason.invalid_value, "options are not distinct", raw)
        if qa_type in ("time_order", "temporal_localization") and any(mentions_time(o) for o in options):
            return RejectedItem(ItemReason.time_in_query, "an option says when it happens", raw)
        answer = str(answer)
        letter = answer.strip().rstrip(".").strip("()").upper()
        if len(letter) == 1 and letter in LETTERS:
            answer = options[LETTERS.index(letter)]
        else:
            answer = _OPTION_PREFIX.sub("", answer)
        match = [o for o in options if o.lower() == answer.lower()]
        if not match:
            return RejectedItem(ItemReason.answer_not_in_options, f"answer {answer!r} is not one of the options", raw)
        answer = match[0]
    answer = str(answer)
    if _HEDGE.search(answer):
        return RejectedItem(ItemReason.hedge_answer, f"hedging answer {answer!r}", raw)
    if fmt == "open_ended" and _leaks(answer, question):
        return RejectedItem(ItemReason.answer_leaked_in_question, "the answer is spelled out in the question", raw)
    if fmt == "multiple_choice" and _leaks(answer, question) and not any(
            _leaks(o, question) for o in options if o != answer):
        return RejectedItem(ItemReason.answer_leaked_in_question, "only the correct option appears in the question", raw)
    return QAItem(category=category, qa_type=qa_type, format=fmt, question=question, answer=answer,
                  evidence_start_s=span[0], evidence_end_s=span[1], options=options,
                  prompt_version=prompt_version, query=query)


def _leaks(answer: str, question: str) -> bool:
    words = _norm_words(answer)
    if len(words) < 2 or words in (["yes"], ["no"]):
        return False
    return f" {' '.join(words)} " in f" {' '.join(_norm_words(question))} "


def drop_near_duplicates(items: list[QAItem], threshold: float = 0.8) -> tuple[list[QAItem], list[RejectedItem]]:
    """Keep the first of any questions whose word sets overlap >= threshold (Jaccard)."""
    kept: list[QAItem] = []
    seen: list[set[str]] = []
    dropped: list[RejectedItem] = []
    for item in items:
        words = set(_norm_words(item.question))
        dup = next((i for i, s in enumerate(seen)
                    if words and len(words & s) / len(words | s) >= threshold), None)
        if dup is None:
            kept.append(item)
            seen.append(words)
        else:
            dropped.append(RejectedItem(ItemReason.duplicate_question,
                                        f"near-duplicate of {kept[dup].question!r}", item.question))
    return kept, dropped


def balance_letters(items: list[QAItem], offset: int = 0) -> None:
    """Move each multiple-choice answer to positions cycling A, B, C, D (no letter bias)."""
    k = offset
    for item in items:
        if item.format != "multiple_choice":
            continue
        target = k % len(LETTERS)
        k += 1
        others = [o for o in item.options if o != item.answer]
        item.options = others[:target] + [item.answer] + others[target:]
