"""Subtitle files (WebVTT / SRT) -> cues, read on the node that downloaded them.

The files live in a node-local cache; the cues travel with the task as text, so the
synthesis stage never opens a path that may only exist on another node.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from pipeline.records import Cue

_CUE_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{3})\s*-->\s*(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{3})")
_TAG = re.compile(r"<[^>]+>")


def parse_cues(text: str) -> list[Cue]:
    """The cues of one WebVTT/SRT document (styling tags removed, empty cues dropped)."""
    cues = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.strip().splitlines()
        for i, line in enumerate(lines):
            m = _CUE_TIME.search(line)
            if m:
                g = [int(x) if x else 0 for x in m.groups()]
                start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
                end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
                body = " ".join(_TAG.sub("", x) for x in lines[i + 1:]).strip()
                if body:
                    cues.append(Cue(start, end, body))
                break
    return cues


def read_subtitles(paths: Sequence[str]) -> list[Cue]:
    """The cues of the first readable subtitle file that has any."""
    for path in paths:
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        cues = parse_cues(text)
        if cues:
            return cues
    return []
