"""What a stage's results depend on, as short stable hashes (the parts of a stage key).

A committed video is skipped only while every stage key it was made with is unchanged;
`curate plan` names the part that changed. A stage's `config` part is derived from the
config sections it declares (`Stage.sections`); execution-only settings (workers, timeouts,
retries, where caches live) are marked once on their section (`Section.execution_only`) and
left out: changing them must not reprocess anything.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

from pydantic import BaseModel

from pipeline.section import key_data


def digest(value: Any) -> str:
    """16 hex chars of sha256 over a JSON rendering of `value`."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_digest(sections: Mapping[str, BaseModel]) -> str:
    """The digest of the config sections a stage reads, without their execution-only fields.
    One section: the digest of that section alone (keys written before sections were declared
    stay equal)."""
    data = {path: key_data(model) for path, model in sections.items()}
    return digest(next(iter(data.values())) if len(data) == 1 else data)


def stage_keys(stages: Sequence[Any]) -> list[dict[str, str]]:
    """Every (stage, part, value) of a plan's stages, in order: what a `videos` row records."""
    from pipeline.stage import leaves

    return [{"stage": s.name, "part": part, "value": value}
            for s in leaves(stages) for part, value in s.key_parts().items()]


def fingerprint(keys: list[dict[str, str]]) -> str:
    """One hash of a plan's stage keys: equal fingerprints, nothing to redo."""
    return digest(keys)
