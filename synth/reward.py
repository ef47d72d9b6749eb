"""The RL reward for `curate export verl` rows, in the form verl loads as a custom reward.

verl settings (verl 0.9.1; the module is importable wherever this package is installed):

    reward.custom_reward_function.path=pkg://synth.reward
    reward.custom_reward_function.name=compute_score

`compute_score(data_source, solution_str, ground_truth, extra_info)` is what verl's reward
managers call. Two kinds, told apart by `extra_info["reward_kind"]` (or the ground truth's shape):

- `temporal_iou`: the response is parsed as the evaluators parse it: the first "a - b" range
  (lmms-eval's charades_sta / eval_tvg main pattern, "to" read as a dash), else the first two
  numbers (InternVideo3's eval_grounding.py); reward = temporal IoU with the ground truth
  `[start, end]`; 0 when nothing parses.
- `option_letter`: 1 when the first option letter the response gives (a bare letter, "B.", "(B)",
  "answer: B", "The answer is B") is the ground truth, else 0.

No dependency beyond the standard library: verl imports this file in its reward workers.
"""
from __future__ import annotations

import json
import re
from typing import Any

_RANGE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:s|sec|secs|seconds)?\s*(?:[-\u2013\u2014]|\bto\b)\s*(\d+(?:\.\d+)?)",
                    re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_LEAD_LETTER = re.compile(r"^\s*[\(\[]?\s*([A-H])\s*(?:[\)\]\.:,]|$|\s)")
_SAID_LETTER = re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*[\(\[]?([A-H])\b(?![a-z])", re.IGNORECASE)


def parse_span(text: str) -> tuple[float, float] | None:
    """(start, end) of a grounding answer, ordered; None when the text gives no two numbers."""
    text = text or ""
    m = _RANGE.search(text)
    if m:
        a, b = float(m[1]), float(m[2])
    else:
        numbers = _NUMBER.findall(text)
        if len(numbers) < 2:
            return None
        a, b = float(numbers[0]), float(numbers[1])
    return (a, b) if a <= b else (b, a)


def temporal_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    union = max(a[1], b[1]) - min(a[0], b[0])
    inter = min(a[1], b[1]) - max(a[0], b[0])
    return max(0.0, inter) / union if union > 0 else float(a == b)


def parse_letter(text: str) -> str | None:
    """The option letter a response gives, or None."""
    text = (text or "").strip()
    m = _LEAD_LETTER.match(text) or _SAID_LETTER.search(text)
    return m[1].upper() if m else None


def _truth_span(ground_truth: Any) -> tuple[float, float]:
    span = json.loads(ground_truth) if isinstance(ground_truth, str) else ground_truth
    return float(span[0]), float(span[1])


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                  **kwargs: Any) -> dict[str, float]:
    """verl's custom reward: {"score": reward, "acc": 1.0 if exact / IoU >= 0.5}."""
    kind = (extra_info or {}).get("reward_kind")
    if kind is None:
        kind = "option_letter" if isinstance(ground_truth, str) and re.fullmatch(r"[A-Z]", ground_truth.strip()) \
            else "temporal_iou"
    if kind == "temporal_iou":
        span = parse_span(solution_str)
        iou = temporal_iou(span, _truth_span(ground_truth)) if span else 0.0
        return {"score": iou, "acc": float(iou >= 0.5)}
    if kind == "option_letter":
        ok = float(parse_letter(solution_str) == str(ground_truth).strip().upper())
        return {"score": ok, "acc": ok}
    raise ValueError(f"unknown reward_kind {kind!r} for data_source {data_source!r}")
