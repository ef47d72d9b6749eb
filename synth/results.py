"""Model answers already paid for, kept beside the dataset and reused by later runs.

One JSON file per video and model stage, `OUT/_cache/<stage>/<id[:2]>/<id>.json`:
- `answers`: request digest -> the answer (texts and token counts). The digest covers
  everything the request asks (model, prompt text with its version, frames by content,
  sampling), so a request whose digest is here is answered from the file: not sent, not
  paid again. A changed prompt, model, k or frame makes a new digest, and only that is asked;
- `keys`: request key -> digest, what the video's latest processing asked (`curate plan`
  replays the rounds against it);
- `inputs`: what `curate plan` needs to rebuild the requests without the video (frame
  timestamps and digests, subtitle lines).
A file holds exactly the answers its video's latest processing used, so it never grows
stale. Writes are atomic; a crash loses at most the answers of the batch in flight.
"""
from __future__ import annotations

import json
import posixpath
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from synth.backends.types import ChatResult

_KEEP = ("texts", "prompt_tokens", "completion_tokens", "visual_tokens")


@dataclass
class VideoResults:
    answers: dict[str, ChatResult] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)


class ResultStore:
    """Per-video answer files under `<url>/_cache` (a local path or an fsspec URL)."""

    def __init__(self, dataset_url: str) -> None:
        self.url = dataset_url.rstrip("/") + "/_cache"
        self._fs = None

    def __getstate__(self) -> dict[str, Any]:  # travels to workers; the filesystem is opened there
        return {"url": self.url, "_fs": None}

    @property
    def fs(self):
        if self._fs is None:
            import fsspec

            self._fs, self._root = fsspec.core.url_to_fs(self.url)
        return self._fs

    def _path(self, stage: str, video_id: str) -> str:
        self.fs  # noqa: B018 - sets _root
        return posixpath.join(self._root, stage, video_id[:2], f"{video_id}.json")

    def load(self, stage: str, video_id: str) -> VideoResults:
        """The stored answers of one video (empty when there are none or the file is unreadable)."""
        try:
            with self.fs.open(self._path(stage, video_id), "r") as fh:
                data = json.load(fh)
            answers = {d: ChatResult(key="", ok=True, **{k: a[k] for k in _KEEP}) for d, a in data["answers"].items()}
            return VideoResults(answers, dict(data.get("keys", {})), dict(data.get("inputs", {})))
        except (OSError, ValueError, KeyError, TypeError):
            return VideoResults()

    def save(self, stage: str, video_id: str, results: VideoResults) -> None:
        path = self._path(stage, video_id)
        data = {"answers": {d: {k: asdict(r)[k] for k in _KEEP} for d, r in results.answers.items()},
                "keys": results.keys, "inputs": results.inputs}
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with self.fs.open(tmp, "w") as fh:
            json.dump(data, fh)
        self.fs.mv(tmp, path)
