"""Verifiable items whose answers come from measured structure, not from the teacher.

A captioned scene's measured start/end answers "find the moment that matches <query>";
the measured order of captioned scenes answers "which happens first". These are the best
RL items, and two things would spoil them:

- the query must not say when: captions carry timestamps (the caption prompt asks for
  them), so a query copied from a caption answers itself without the video. The teacher
  writes a time-free description of each target window instead (one text-only request
  per video, `describe_moments`), and any description that still mentions a time is
  dropped (`time_in_query`);
- the query must fit its window only: if another window's caption covers the query's
  words as well as the target's, the measured span is not the only right answer, and the
  item is dropped (`ambiguous_query`).
The teacher supplies wording only; the answer is always the measured structure.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from synth.backends.parsing import parse_json_reply
from synth.backends.types import ChatRequest
from synth.captions import Window
from synth.evaluator import format_span, grounding_question, mentions_time, snap_span
from synth.items import QAItem, RejectedItem
from synth.prompting import NEWEST, PromptSet
from synth.replies import moments as moments_reply
from synth.taxonomy import ItemReason

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an the and or of in on at to with over under from by for is are was were be its it this "
                  "that there their his her they he she as into onto while then".split())


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall((text or "").lower()) if w not in _STOP and len(w) > 1}


def best_windows(query: str, windows: Sequence[Window]) -> list[Window]:
    """The captioned windows whose captions cover most of the query's content words."""
    words = content_words(query)
    if not words:
        return []
    scored = [(len(words & content_words(w.caption or "")) / len(words), w) for w in windows if w.caption]
    top = max((s for s, _ in scored), default=0.0)
    return [w for s, w in scored if s == top and s > 0]


@dataclass
class MomentPlan:
    """Which windows get a time-free description: whole scenes to ground, groups of 4 to order."""

    grounding: list[Window] = field(default_factory=list)
    order: list[list[Window]] = field(default_factory=list)

    @property
    def targets(self) -> list[Window]:
        seen: dict[int, Window] = {}
        for w in [*self.grounding, *(w for group in self.order for w in group)]:
            seen.setdefault(w.index, w)
        return sorted(seen.values(), key=lambda w: w.index)


def _spread(candidates: list[Window], limit: int) -> list[Window]:
    if limit and len(candidates) > limit:
        step = len(candidates) / limit
        return [candidates[int(i * step)] for i in range(limit)]
    return candidates[:limit]


def plan_moments(windows: Sequence[Window], grounding: int, order: int, min_words: int) -> MomentPlan:
    """Whole scenes (not parts of split scenes) spread over the video for grounding, and
    interleaved groups of 4 captioned windows for time order."""
    captioned = [w for w in windows if w.caption and len(w.caption.split()) >= min_words]
    per_scene: dict[int, int] = {}
    for w in windows:
        per_scene[w.scene_index] = per_scene.get(w.scene_index, 0) + 1
    whole = [w for w in captioned if per_scene[w.scene_index] == 1]
    groups = min(order, len(captioned) // 4)
    return MomentPlan(grounding=_spread(whole, grounding),
                      order=[captioned[k::groups][:4] for k in range(groups)] if groups else [])


def moments_request(video_id: str, duration: float, windows: Sequence[Window], plan: MomentPlan,
                    system: str | None, prompts: PromptSet = NEWEST) -> ChatRequest | None:
    """One text-only request per video for every target window's time-free description; its reply's
    schema and budget are sized by the number of targets (synth/replies.py)."""
    if not plan.targets:
        return None
    numbered = "\n".join(f"window {w.index}: [{w.start_s:.1f}-{w.end_s:.1f} s] {w.caption}"
                         for w in windows if w.caption)
    prompt = prompts("describe_moments").render(duration=duration, captions=numbered,
                                                    targets=", ".join(str(w.index) for w in plan.targets))
    reply = moments_reply([w.index for w in plan.targets])
    return ChatRequest(key=f"{video_id}/moments", system=system, prompt=prompt, json_mode=True,
                       max_tokens=reply.max_tokens, json_schema=reply.response_format()["json_schema"], temperature=0.2)


def parse_moments(text: str) -> dict[int, str]:
    """window index -> query from the teacher's reply (nulls and malformed entries left out)."""
    parsed, error = parse_json_reply(text or "")
    entries = parsed.get("moments") if isinstance(parsed, dict) else parsed
    out: dict[int, str] = {}
    for entry in entries if isinstance(entries, list) and not error else []:
        if isinstance(entry, dict) and isinstance(entry.get("query"), str) and entry["query"].strip():
            try:
                out[int(entry["window"])] = " ".join(entry["query"].split()).strip('"')
            except (TypeError, ValueError, KeyError):
                continue
    return out


def vet_query(query: str, target: Window, windows: Sequence[Window]) -> str | None:
    """None when `query` is time-free and fits `target` better than every other window; else a reason."""
    if mentions_time(query):
        return ItemReason.time_in_query
    best = best_windows(query, windows)
    if [w.index for w in best] != [target.index]:
        return ItemReason.ambiguous_query
    return None


def composed_items(plan: MomentPlan, queries: dict[int, str], windows: Sequence[Window], duration: float,
                   prompt_version: str) -> tuple[list[QAItem], list[RejectedItem]]:
    """Grounding and time-order items from the vetted queries; unusable queries become rejects."""
    vetted: dict[int, str] = {}
    rejected: list[RejectedItem] = []
    for w in plan.targets:
        query = queries.get(w.index)
        if query is None:
            continue  # the teacher found no description that fits only this window: nothing to drop
        reason = vet_query(query, w, windows)
        if reason is None:
            vetted[w.index] = query
        else:
            rejected.append(RejectedItem(reason, f"composed query for window {w.index} "
                                                 f"[{w.start_s:.1f}-{w.end_s:.1f} s] dropped", query))
    items: list[QAItem] = []
    for w in plan.grounding:
        span = snap_span(w.start_s, w.end_s, duration)
        if w.index in vetted and span is not None:
            items.append(QAItem(category="spatio_temporal", qa_type="temporal_localization", format="grounding",
                                question=grounding_question(duration, vetted[w.index]), answer=format_span(*span),
                                evidence_start_s=span[0], evidence_end_s=span[1], source="composed",
                                verifiable=True, prompt_version=prompt_version, query=vetted[w.index]))
    for k, group in enumerate(plan.order):
        if len(group) < 4 or not all(w.index in vetted for w in group) \
                or len({vetted[w.index].lower() for w in group}) < 4:
            continue
        first = k % 2 == 0
        target = group[0] if first else group[-1]
        span = snap_span(group[0].start_s, group[-1].end_s, duration)
        if span is None:
            continue
        items.append(QAItem(category="spatio_temporal", qa_type="time_order", format="multiple_choice",
                            question=f"Which of the following happens {'first' if first else 'last'} in the video?",
                            answer=vetted[target.index], options=[vetted[w.index] for w in group],
                            evidence_start_s=span[0], evidence_end_s=span[1], source="composed", verifiable=True,
                            prompt_version=prompt_version))
    return items, rejected


__all__ = ["MomentPlan", "best_windows", "composed_items", "content_words", "moments_request", "parse_moments",
           "plan_moments", "vet_query"]
