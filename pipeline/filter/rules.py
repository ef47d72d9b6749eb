"""The content filters, each a rule that returns its decision as a value (datatrove's way).

A rule reads the segment stage's content signals and the bound configured for it in the
`filter` section (a field named like the rule; None = off) and returns a `Decision`: keep, or
the reason and a message with the measured value and the bound. `RULES` is the order they are
tried in: the more specific reasons first (a black screen is also still; slides are too).
Adding a filter: one rule here and its bound in `FilterConfig` (a new reason also goes into
`Reason` and schemas/common.json, the one data model).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pipeline.records import ContentSignals, Reason


@dataclass(frozen=True)
class Decision:
    """A filter's verdict: keep, or reject with `reason` and a message naming value and bound."""

    keep: bool
    reason: Reason | None = None
    message: str = ""


KEEP = Decision(True)


@dataclass(frozen=True)
class Rule:
    """One filter: `name` is its bound's field in `FilterConfig`."""

    name: str
    decide: Callable[[ContentSignals, float], Decision]


def _mostly_black(s: ContentSignals, bound: float) -> Decision:
    if s.blank_share >= bound:
        return Decision(False, Reason.mostly_black,
                        f"blank_share {s.blank_share:.3f} >= {bound:g} (black or uniform frames)")
    return KEEP


def _slideshow(s: ContentSignals, bound: float) -> Decision:
    if s.text_score >= bound:
        return Decision(False, Reason.slideshow, f"text_score {s.text_score:.3f} >= {bound:g} (slides / text screens)")
    return KEEP


def _static_video(s: ContentSignals, bound: float) -> Decision:
    if s.static_share >= bound:
        return Decision(False, Reason.static_video, f"static_share {s.static_share:.3f} >= {bound:g}")
    return KEEP


def _low_motion(s: ContentSignals, bound: float) -> Decision:
    if s.motion < bound:
        return Decision(False, Reason.low_motion, f"motion {s.motion:.3f} < {bound:g}")
    return KEEP


def _letterboxed(s: ContentSignals, bound: float) -> Decision:
    bars = 1.0 - (1.0 - s.letterbox) * (1.0 - s.pillarbox)
    if bars >= bound:
        return Decision(False, Reason.letterboxed, f"black bars cover {bars:.3f} of the frame >= {bound:g} "
                        f"(letterbox {s.letterbox:.3f}, pillarbox {s.pillarbox:.3f})")
    return KEEP


RULES: list[Rule] = [Rule("mostly_black", _mostly_black), Rule("slideshow", _slideshow),
                     Rule("static_video", _static_video), Rule("low_motion", _low_motion),
                     Rule("letterboxed", _letterboxed)]


def decide(signals: ContentSignals, bounds: dict[str, float | None], rules: list[Rule] | None = None) -> Decision:
    """The first configured rule `signals` fail, else keep."""
    for rule in RULES if rules is None else rules:
        bound = bounds.get(rule.name)
        if bound is not None:
            decision = rule.decide(signals, bound)
            if not decision.keep:
                return decision
    return KEEP
