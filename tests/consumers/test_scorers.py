"""Grounding answers and RL rewards through the evaluators' own parsers (lmms-eval 0.7.3).

lmms-eval's task packages import its whole registry on `import lmms_eval.tasks` (evaluate,
sacrebleu, ...: not installed here); the scorer files are loaded as they are, with their
parent packages registered by path, so the code that runs is lmms-eval's own."""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest

from synth.evaluator import format_span
from synth.reward import compute_score

SPANS = [(0.0, 23.1), (4.5, 9.0), (12.0, 13.5), (61.2, 180.0), (1234.5, 1300.0), (3000.0, 3599.9)]


def _lmms(module: str):
    if "lmms_eval" in sys.modules:
        root = Path(list(sys.modules["lmms_eval"].__path__)[0])
    else:
        root = Path(importlib.util.find_spec("lmms_eval").submodule_search_locations[0])
    for name, folder in (("lmms_eval", root), ("lmms_eval.tasks", root / "tasks"),
                         ("lmms_eval.tasks._task_utils", root / "tasks" / "_task_utils")):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(folder)]
            sys.modules[name] = pkg
    return importlib.import_module(module)


@pytest.fixture(scope="module")
def scorers():
    return {"charades_sta/utils": _lmms("lmms_eval.tasks.charades_sta.utils"),
            "charades_sta/eval_tvg": _lmms("lmms_eval.tasks.charades_sta.eval_tvg"),
            "timelens": _lmms("lmms_eval.tasks.timelens.utils")}


@pytest.mark.parametrize("span", SPANS)
def test_every_scorer_parses_the_grounding_answer_to_its_span(scorers, span):
    answer = format_span(*span)
    for name, mod in scorers.items():
        parsed = [list(map(float, t)) for t in mod.extract_time(answer)]
        assert parsed and parsed[0] == list(span), (name, answer, parsed)


def test_the_old_answer_form_failed_eval_tvg(scorers):
    # "0.0 - 23.1 seconds" has no keyword ("happens in", "start", ...): eval_tvg finds nothing
    assert scorers["charades_sta/eval_tvg"].extract_time("0.0 - 23.1 seconds") == []


@pytest.mark.parametrize("response", ["The event happens in 3.0 - 9.5 seconds.", "It starts at 2 and ends at 8.",
                                      "10.0 - 12.5 seconds", "from 4.2 to 6.8", "Answer: 0.5-4"])
def test_the_reward_is_the_evaluators_iou(scorers, response):
    truth = (2.5, 8.0)
    mod = scorers["charades_sta/utils"]
    parsed = mod.extract_time(response)
    if not parsed:  # lmms-eval reads one number per keyword sentence: InternVideo3's rule, the first two numbers
        parsed = [[float(x) for x in re.findall(r"[\d]+\.?\d*", response)[:2]]]
    expected = mod.iou(parsed[0], list(truth))
    got = compute_score("longvideo-curation/composed/temporal_localization", response, "[2.5, 8.0]",
                        {"reward_kind": "temporal_iou"})["score"]
    assert got == pytest.approx(expected)
