"""Verifiable items whose answers come from measured structure, not from the teacher.

A captioned scene's measured start/end is the answer to "when does <caption> happen";
the measured order of captioned scenes answers "which happens first". The teacher only
supplies the wording (its caption), never the answer. These are the backbone of RL data.
"""
from __future__ import annotations

import re
from typing import Sequence

from synth.captions import Window
from synth.items import QAItem, format_span

GROUNDING_TEMPLATE = ("Given the video of duration {d:.1f} seconds, find the start and end timestamps "
                      "(in seconds) of the moment that best matches the following description: \"{query}\"")


def first_sentence(caption: str, max_words: int = 30) -> str:
    sentence = re.split(r"(?<=[.!?])\s+", caption.strip())[0]
    words = sentence.split()
    return " ".join(words[:max_words]).rstrip(",;:") + ("" if len(words) <= max_words else "...")


def _distinct(windows: Sequence[Window], min_words: int) -> list[Window]:
    """Captioned windows whose lead sentences differ from every other one (unambiguous queries)."""
    leads = {}
    for w in windows:
        if w.caption and len(w.caption.split()) >= min_words:
            leads.setdefault(first_sentence(w.caption).lower(), []).append(w)
    return sorted((ws[0] for ws in leads.values() if len(ws) == 1), key=lambda w: w.start_s)


def grounding_items(windows: Sequence[Window], duration: float, limit: int, min_words: int,
                    prompt_version: str) -> list[QAItem]:
    """Ground whole scenes (not split windows) so the span is exactly the measured scene."""
    per_scene: dict[int, list[Window]] = {}
    for w in windows:
        per_scene.setdefault(w.scene_index, []).append(w)
    whole = [ws[0] for ws in per_scene.values() if len(ws) == 1]
    candidates = _distinct(whole, min_words)
    if limit and len(candidates) > limit:  # spread over the video
        step = len(candidates) / limit
        candidates = [candidates[int(i * step)] for i in range(limit)]
    return [QAItem(category="spatio_temporal", qa_type="temporal_localization", format="grounding",
                   question=GROUNDING_TEMPLATE.format(d=duration, query=first_sentence(w.caption)),
                   answer=format_span(w.start_s, w.end_s), evidence_start_s=w.start_s, evidence_end_s=w.end_s,
                   source="composed", verifiable=True, prompt_version=prompt_version)
            for w in candidates[:limit]]


def order_items(windows: Sequence[Window], limit: int, min_words: int, prompt_version: str) -> list[QAItem]:
    """'Which happens first/last' over 4 captioned windows, in measured time order.

    Options are stored without letters; rows render them after `balance_letters` has
    placed the answer, so option position carries no signal.
    """
    candidates = _distinct(windows, min_words)
    groups = min(limit, len(candidates) // 4)
    out: list[QAItem] = []
    for k in range(groups):
        group = candidates[k::groups][:4]  # interleaved: each group spans the video
        first = k % 2 == 0
        target = group[0] if first else group[-1]
        out.append(QAItem(category="spatio_temporal", qa_type="time_order", format="multiple_choice",
                          question=f"Which of the following happens {'first' if first else 'last'} in the video?",
                          answer=first_sentence(target.caption), options=[first_sentence(w.caption) for w in group],
                          evidence_start_s=group[0].start_s, evidence_end_s=group[-1].end_s,
                          source="composed", verifiable=True, prompt_version=prompt_version))
    return out
