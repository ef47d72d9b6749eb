"""Filters are rules returning a decision as a value; one rule per bound of the `filter` section.

The example adds a filter the way a contributor would: one rule (here a fixture) and its bound
in the config section; the stage, the runner and the keys need nothing else (the bound is in
the filter stage's key because the key is derived from the section).
"""
from __future__ import annotations

from pydantic import Field

import pipeline.filter.rules as rules
from pipeline.filter.config import FilterConfig
from pipeline.filter.rules import KEEP, Decision, Rule, decide
from pipeline.filter.stages import FilterStage
from pipeline.records import ContentSignals, Reason, VideoTask


def _signals(**kw) -> ContentSignals:
    base = dict(motion=5.0, motion_p90=8.0, static_share=0.0, black_share=0.0, blank_share=0.0, letterbox=0.0,
                pillarbox=0.0, text_score=0.1)
    return ContentSignals(**{**base, **kw})


def test_every_rule_has_its_bound_and_every_bound_its_rule():
    assert [r.name for r in rules.RULES] and {r.name for r in rules.RULES} == set(FilterConfig.model_fields)


def test_a_decision_is_a_value_with_the_measured_value_and_the_bound():
    black = decide(_signals(blank_share=0.97, static_share=1.0), FilterConfig().model_dump())
    assert black == Decision(False, Reason.mostly_black, "blank_share 0.970 >= 0.95 (black or uniform frames)")
    assert decide(_signals(), FilterConfig().model_dump()) is KEEP


class WithTooDark(FilterConfig):
    """The one config line of the example filter."""

    too_dark: float | None = Field(None, ge=0, le=1, description="reject when the blank share reaches this")


def test_adding_a_filter_is_a_rule_and_a_bound(monkeypatch):
    def too_dark(s: ContentSignals, bound: float) -> Decision:
        return Decision(False, Reason.mostly_black, f"too dark {s.blank_share:.2f}") if s.blank_share >= bound else KEEP

    monkeypatch.setattr(rules, "RULES", [*rules.RULES, Rule("too_dark", too_dark)])
    cfg = WithTooDark(too_dark=0.5)
    stage = FilterStage(cfg)
    task = VideoTask("v1", "v1", "local", 0)
    task.signals = _signals(blank_share=0.6)
    assert stage.process(task).reject_message == "too dark 0.60"
    assert FilterStage(WithTooDark()).key_parts() != stage.key_parts()  # its bound is in the stage key
