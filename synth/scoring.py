"""Scoring a model's answer against an item's answer, as the evaluators do.

Multiple choice: the first standalone option letter. Grounding: the first two numbers,
scored by temporal IoU = max(0, min(e1,e2) - max(s1,s2)) / (max(e1,e2) - min(s1,s2)).
Open-ended: token F1 here; teacher-as-judge and embedding similarity live in `judges`.
"""
from __future__ import annotations

import re
from collections import Counter

_LETTER = re.compile(r"\b([A-D])\b")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[a-z0-9]+")


def parse_letter(text: str) -> str | None:
    m = _LETTER.search(text.strip().upper()) if text else None
    return m.group(1) if m else None


def parse_span(text: str) -> tuple[float, float] | None:
    nums = _NUMBER.findall(text or "")
    if len(nums) < 2:
        return None
    return float(nums[0]), float(nums[1])


def temporal_iou(pred: tuple[float, float] | None, truth: tuple[float, float]) -> float:
    if pred is None:
        return 0.0
    s1, e1 = sorted(pred)
    s2, e2 = sorted(truth)
    union = max(e1, e2) - min(s1, s2)
    return max(0.0, min(e1, e2) - max(s1, s2)) / union if union > 0 else 0.0


def token_f1(pred: str, truth: str) -> float:
    p, t = _WORD.findall((pred or "").lower()), _WORD.findall((truth or "").lower())
    if not p or not t:
        return 0.0
    common = sum((Counter(p) & Counter(t)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(t)
    return 2 * precision * recall / (precision + recall)
