"""A scripted teacher: an OpenAI-compatible server whose answers depend on the prompt kind.

Captions describe each window with words unique to that window; QA replies are chosen by
the video's duration (in the prompt), so one run exercises good, malformed, throttled,
failing and hanging teachers at once.
"""
from __future__ import annotations

import json
import re
import threading

from tests.openai_server import Action, Hang, Reply, ScriptedOpenAIServer, Status

WORDS = ["amber", "bronze", "cobalt", "crimson", "emerald", "fuchsia", "golden", "indigo", "jade", "lilac",
         "magenta", "navy", "olive", "pearl", "ruby", "saffron", "teal", "umber", "violet", "wheat"]


def caption_for(start: float, end: float) -> str:
    word = WORDS[int(start * 7 + end * 3) % len(WORDS)]
    return (f"A {word} rectangle glides over a striped {word}-toned backdrop between {start:.1f} and {end:.1f} "
            f"seconds. The camera stays still.")


_CAPTION_LINE = re.compile(r"^\[([\d.]+)-([\d.]+) s\] (.*)$", re.MULTILINE)
_WORD_OF = re.compile(r"^An? (\w+) rectangle")


def time_free(caption: str) -> str:
    """What a teacher asked for a time-free description writes: the caption minus its times."""
    return re.sub(r"\s+between [\d.]+ and [\d.]+ seconds", "", caption.split(". ")[0]).rstrip(".") + "."


def unique_window(prompt: str) -> tuple[float, float, str] | None:
    """The first captioned window of a QA prompt whose colour word no other window has."""
    lines = [(float(a), float(b), c) for a, b, c in _CAPTION_LINE.findall(prompt)]
    words = [(_WORD_OF.match(c) or [None, None])[1] for _, _, c in lines]
    for (a, b, c), w in zip(lines, words):
        if w and words.count(w) == 1:
            return a, b, c
    return None


def good_items(duration: float, prompt: str = "") -> list[dict]:
    d = duration
    target = unique_window(prompt)
    grounding = ({"category": "spatio_temporal", "type": "temporal_localization", "format": "grounding",
                  "query": time_free(target[2]), "answer": [target[0], target[1]], "evidence": [target[0], target[1]]}
                 if target else
                 {"category": "holistic", "type": "summary", "format": "grounding",
                  "query": "The backdrop changes colour.", "answer": [2.5, 4.5], "evidence": [2.5, 4.5]})
    return [
        {"category": "perception", "type": "object_description", "format": "open_ended",
         "question": "What shape moves across the screen at the start?", "answer": "A rectangle",
         "evidence": [0, 3]},
        {"category": "spatio_temporal", "type": "object_direction", "format": "multiple_choice",
         "question": "In which direction does the rectangle move?",
         "options": ["Left to right", "Right to left", "Top to bottom", "It does not move"],
         "answer": "A", "evidence": [0, d / 2]},
        {"category": "event_action", "type": "fine_grained_action", "format": "multiple_choice",
         "question": "What does the camera do?",
         "options": ["A. Pans left", "B. Stays still", "C. Zooms in", "D. Tilts up"],
         "answer": "B. Stays still", "evidence": [1, d - 1]},
        grounding,
        # rejected, one reason each
        {"category": "perception", "type": "count", "format": "open_ended", "question": "How many boxes?",
         "answer": "One"},  # missing evidence
        {"category": "perception", "type": "count", "format": "open_ended",
         "question": "How many rectangles appear at the end?", "answer": "One", "evidence": [d + 30, d + 40]},
        {"category": "perception", "type": "binary", "format": "multiple_choice",
         "question": "Is there a person?", "options": ["Yes", "No", "Maybe", "Twice"], "answer": "Sometimes",
         "evidence": [0, 2]},
        {"category": "perception", "type": "visual_text", "format": "open_ended",
         "question": "What text is written on the wall?", "answer": "Not shown in the video", "evidence": [0, 2]},
        {"category": "perception", "type": "scene_description", "format": "open_ended",
         "question": "Is the striped backdrop green or is it a striped green backdrop?",
         "answer": "a striped green backdrop", "evidence": [0, 2]},
        {"category": "perception", "type": "object_description", "format": "open_ended",
         "question": "What shape moves across the screen at the start?", "answer": "A square",
         "evidence": [0, 3]},  # duplicate of the first
    ]


def moments_reply(prompt: str) -> list[dict]:
    """Time-free descriptions of the target windows, written naively from their captions (a window
    whose caption another window shares gets a description that fits both: the vetting drops it)."""
    lines = dict((int(n), c) for n, c in re.findall(r"^window (\d+): \[[\d.]+-[\d.]+ s\] (.*)$", prompt, re.M))
    targets = [int(x) for x in re.search(r"Target windows: ([\d, ]+)", prompt)[1].split(",")]
    return [{"window": n, "query": time_free(lines[n])} for n in targets if n in lines]


REJECTED_IN_GOOD = {"missing_field": 1, "span_out_of_range": 1, "answer_not_in_options": 1,
                    "hedge_answer": 1, "answer_leaked_in_question": 1, "duplicate_question": 1}


class TeacherServer(ScriptedOpenAIServer):
    """Scenario per video duration: 12 good, 13 malformed, 14 429-then-good, 15 failing, 16 hang-then-good."""

    def __init__(self) -> None:
        super().__init__()
        self.healed = False  # set: every scenario answers well from now on
        self.qa_calls: dict[int, int] = {}
        self._count_lock = threading.Lock()

    def _next_action(self, prompt: str) -> Action:
        m = re.search(r"sampled from ([\d.]+) s to ([\d.]+) s", prompt)
        if m:
            return Reply(caption_for(float(m[1]), float(m[2])), prompt_tokens=300, completion_tokens=40)
        if prompt.startswith("Below are timestamped"):
            return Reply("A coloured rectangle moves over changing striped backdrops.", completion_tokens=20)
        if prompt.startswith("You write search queries"):
            return Reply(json.dumps({"moments": moments_reply(prompt)}), completion_tokens=60)
        if prompt.startswith("You grade answers"):
            return Reply('{"score": 0.8}', completion_tokens=5)
        if prompt.startswith("You wrote a question"):
            return Reply('{"confirmed": true}', completion_tokens=5)
        m = re.search(r"Video duration: ([\d.]+) seconds", prompt)
        if not m:
            return Status(400)
        duration = round(float(m[1]))
        with self._count_lock:
            n = self.qa_calls[duration] = self.qa_calls.get(duration, 0) + 1
        good = Reply(json.dumps({"items": good_items(float(m[1]), prompt)}), prompt_tokens=900, completion_tokens=600)
        if self.healed:
            return good
        if duration == 13:
            return Reply("Sure! Items: {'question': oops", completion_tokens=9)  # not JSON
        if duration == 14:
            return Status(429, retry_after="0") if n == 1 else good
        if duration == 15:
            return Status(500)
        if duration == 16:
            return Hang(3.0, then=good) if n == 1 else good
        return good
