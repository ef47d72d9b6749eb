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

    def __init__(self, dataset_url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = dataset_url.rstrip("/") + "/_cache"
        self.storage_options = dict(storage_options or {})
        self._fs = None

    def __getstate__(self) -> dict[str, Any]:  # travels to workers; the filesystem is opened there
        return {"url": self.url, "storage_options": self.storage_options, "_fs": None}

    @property
    def fs(self):
        if self._fs is None:
            import fsspec

            self._fs, self._root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return self._fs

    def prune(self, video_ids: list[str]) -> int:
        """Delete the answer files of these videos in every stage; returns how many existed.

        Called with the videos that compaction found permanently rejected: their rows will not
        be redone unless the pipeline changes, so their answers would only take room (and, on an
        object store, a million objects at recipe scale)."""
        if not video_ids:
            return 0
        self.fs  # noqa: B018 - sets _root
        if not self.fs.exists(self._root):
            return 0
        stages = [posixpath.basename(p) for p in self.fs.ls(self._root, detail=False)]  # one per model stage
        found = [p for stage in stages for v in video_ids if self.fs.exists(p := self._path(stage, v))]
        if found:
            self.fs.rm(found)
        return len(found)

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
