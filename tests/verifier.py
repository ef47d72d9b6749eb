"""A scripted verifier (the in-training model) for end-to-end label tests.

With frames it answers like a competent model that misses one of its k samples: it knows each window of the scripted
teacher's captions by its colour word (tests/teacher.py), so a grounding query or a
time-order option that names a colour finds its window. Without the video (the blind
pass: "You cannot see the video") it answers from the question text alone, as a text-only
model would: a span or an option whose text states when wins, anything else is a guess
(the whole video for grounding, "A" for multiple choice).
"""
from __future__ import annotations

import re

from tests.openai_server import Reply, ScriptedOpenAIServer
from tests.teacher import WORDS, caption_for

_SPAN = re.compile(r"between ([\d.]+) and ([\d.]+) seconds")
_DURATION = re.compile(r"duration ([\d.]+) seconds")
_OPTIONS = re.compile(r"^([ABCD])\. (.*)$", re.M)


class VerifierServer(ScriptedOpenAIServer):
    """Answers k samples per question; sees the windows the teacher captioned (it "watched" them)."""

    def __init__(self, k: int, teacher: ScriptedOpenAIServer) -> None:
        super().__init__()
        self.k = k
        self.teacher = teacher

    def _where(self, text: str) -> tuple[float, float] | None:
        """The one captioned window whose colour word `text` names (None: none, or several)."""
        windows = {(float(m[1]), float(m[2])) for r in list(self.teacher.received)
                   if (m := re.search(r"sampled from ([\d.]+) s to ([\d.]+) s", r.prompt))}
        words = [w for w in WORDS if re.search(rf"\b{w}\b", text)]
        hits = [span for span in windows if caption_for(*span).split()[1] in words]
        return hits[0] if len(hits) == 1 else None

    def _next_action(self, prompt: str):
        blind = prompt.startswith("You cannot see the video")
        options = _OPTIONS.findall(prompt)
        if "find the start and end timestamps" in prompt:
            stated = _SPAN.search(prompt.split("description:", 1)[-1])
            if blind:
                d = float(_DURATION.search(prompt)[1])
                answer = f"{stated[1]} - {stated[2]}" if stated else f"0.0 - {d:.1f}"
            else:
                span = self._where(prompt.split("description:", 1)[-1])
                answer = f"{span[0]:.1f} - {span[1]:.1f}" if span else "0.0 - 1.0"
        elif options:
            first = "happens first" in prompt
            if blind:
                times = [(float(m[1]), letter) for letter, text in options if (m := _SPAN.search(text))]
            else:
                times = [(s[0], letter) for letter, text in options if (s := self._where(text))]
            if "happens" in prompt and len(times) == 4:
                answer = (min(times) if first else max(times))[1]
            else:
                answer = "A"
        else:
            answer = "A rectangle moves over a striped backdrop."
        if blind:
            return Reply([answer], completion_tokens=4)
        # a model in training is not always right: one of its k samples misses (pass rate (k-1)/k)
        miss = "0.0 - 0.5" if "find the start and end timestamps" in prompt else "D" if answer != "D" else "C"
        return Reply([miss] + [answer] * (self.k - 1), completion_tokens=4)
