"""The formats the evaluators and the RL rewards parse, in one place.

Grounding: the evaluators' own prompt (DESIGN.md), answered by the first two numbers and
scored by temporal IoU; multiple choice: lettered options and "Answer with the option
letter only.". Spans are written with one decimal, inside the video: the SFT answer text,
the RL ground truth and the stored evidence are the same two numbers.
"""
from __future__ import annotations

import math
import re

GROUNDING_TEMPLATE = ("Given the video of duration {d:.1f} seconds, find the start and end timestamps "
                      "(in seconds) of the moment that best matches the following description: \"{query}\"")
MC_SUFFIX = "Answer with the option letter only."

# a time reference that would give a grounding answer away: "12.5 s", "at 40 seconds", "1:05",
# "between 3 and 6", "the first/last minute", "at the start/end of the video"
_TIME = re.compile(
    r"(\d+(?:[.,]\d+)?\s*(?:s|sec|secs|second|seconds|min|mins|minute|minutes|h|hours?)\b)"
    r"|(\b\d{1,2}:\d{2}\b)"
    r"|(\bbetween\s+\d+(?:\.\d+)?\s+and\s+\d+)"
    r"|(\b(?:at|near|towards?|by|in)\s+the\s+(?:very\s+)?(?:start|beginning|end|middle|outset|close)"
    r"(?:\s+of\s+the\s+(?:video|clip|film|recording))?\s*[.,;!?\"]?\s*$)"
    r"|(\b(?:at|near|towards?|by|in)\s+the\s+(?:very\s+)?(?:start|beginning|end|middle)\s+of\s+the\s+"
    r"(?:video|clip|film|recording)\b)"
    r"|(\b(?:first|last|final|opening|closing)\s+(?:few\s+)?(?:seconds?|minutes?|moments?|scenes?|shots?|part)\b)"
    r"|(\btimestamps?\b)", re.IGNORECASE)


def grounding_question(duration_s: float, query: str) -> str:
    return GROUNDING_TEMPLATE.format(d=duration_s, query=query.strip().strip('"'))


def mentions_time(text: str) -> bool:
    """Whether `text` says when something happens (and so answers a grounding question itself)."""
    return bool(_TIME.search(text or ""))


def _tenth_floor(x: float) -> float:
    return math.floor(x * 10 + 1e-6) / 10


def snap_span(start: float, end: float, duration_s: float) -> tuple[float, float] | None:
    """[start, end] at one decimal, rounded first and then kept inside [0, duration]; None if empty.

    Rounding after clamping would put 23.1667 at 23.2, past a 23.1667 s video."""
    limit = _tenth_floor(duration_s)
    s = min(max(0.0, round(start, 1)), limit)
    e = min(max(0.0, round(end, 1)), limit)
    return (s, e) if e > s else None


SPAN_ANSWER = "The event happens in {s:.1f} - {e:.1f} seconds."


def format_span(start: float, end: float) -> str:
    """A grounding answer every public scorer parses to [start, end]: InternVideo3's eval_grounding.py
    (first two numbers), lmms-eval's charades_sta utils, eval_tvg.py (which reads only sentences with
    a keyword such as "happens in") and timelens."""
    return SPAN_ANSWER.format(s=start, e=end)
