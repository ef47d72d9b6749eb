"""Parse a model's JSON reply; a reply that is not JSON is a rejected item, not a crash."""
from __future__ import annotations

import json
import re
from typing import Any

MALFORMED_JSON = "malformed_json"

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_json_reply(text: str) -> tuple[Any | None, str | None]:
    """(object, None) when `text` holds one JSON value, else (None, "malformed_json").

    Tolerates what teachers commonly wrap JSON in: a ```json fence, or prose before and
    after one top-level object/array.
    """
    s = text.strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1)
    try:
        return json.loads(s), None
    except ValueError:
        pass
    starts = [i for i in (s.find("{"), s.find("[")) if i >= 0]
    if starts:
        start = min(starts)
        closer = "}" if s[start] == "{" else "]"
        end = s.rfind(closer)
        if end > start:
            try:
                return json.loads(s[start:end + 1]), None
            except ValueError:
                pass
    return None, MALFORMED_JSON
