"""What a stage's results depend on, as short stable hashes (the parts of a stage key).

A committed video is skipped only while every stage key it was made with is unchanged;
`curate plan` names the part that changed. Execution-only settings (workers, timeouts,
retries, where caches live) are left out: changing them must not reprocess anything.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Sequence

from pydantic import BaseModel


def digest(value: Any) -> str:
    """16 hex chars of sha256 over a JSON rendering of `value`."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_digest(model: BaseModel, exclude: Iterable[str] = ()) -> str:
    """The digest of a config section without the named fields (dotted paths reach into sub-sections)."""
    data = model.model_dump(mode="json")
    for path in exclude:
        node = data
        *parents, last = path.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict):
            node.pop(last, None)
    return digest(data)


def stage_keys(stages: Sequence[Any]) -> list[dict[str, str]]:
    """Every (stage, part, value) of a plan's stages, in order: what a `videos` row records."""
    from pipeline.stage import leaves

    return [{"stage": s.name, "part": part, "value": value}
            for s in leaves(stages) for part, value in s.key_parts().items()]


def fingerprint(keys: list[dict[str, str]]) -> str:
    """One hash of a plan's stage keys: equal fingerprints, nothing to redo."""
    return digest(keys)
