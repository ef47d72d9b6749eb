"""A Ray-free callable class that runs any `ModelBackend` over a batch of rows.

The runner passes it to `Dataset.map_batches(GenerateUDF, fn_constructor_kwargs=...,
compute=ActorPoolStrategy(...), num_gpus=...)`: the model loads once per actor in
`__init__`, each batch's `request` column (ChatRequest dicts or pickles) becomes a `result` column
(ChatResult dicts); every other column passes through, so no row is dropped.
"""
from __future__ import annotations

import pickle
from dataclasses import asdict
from typing import Any, Mapping

from synth.backends.base import make_backend
from synth.backends.config import BackendConfig
from synth.backends.frames import FetchFrames, generate_with_images
from synth.backends.types import ChatRequest


def as_request(value: Any) -> ChatRequest:
    """A request from a column value: a ChatRequest, its dict, or its pickle (bytes)."""
    if isinstance(value, ChatRequest):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        req = pickle.loads(bytes(value))
        if not isinstance(req, ChatRequest):
            raise TypeError(f"pickled request column holds {type(req).__name__}, not ChatRequest")
        return req
    return ChatRequest(**dict(value))


class GenerateUDF:
    """Per-actor backend: `setup()` once, `generate()` per batch."""

    def __init__(self, backend_config: Mapping[str, Any] | BackendConfig,
                 request_column: str = "request", result_column: str = "result",
                 fetch_frames: FetchFrames | None = None) -> None:
        cfg = backend_config if isinstance(backend_config, BackendConfig) \
            else BackendConfig.model_validate(dict(backend_config))
        self.backend = make_backend(cfg)
        self.backend.setup()
        self.request_column = request_column
        self.result_column = result_column
        self.fetch_frames = fetch_frames  # requests whose frames wait in a frame store (passes)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        requests = [as_request(r) for r in batch[self.request_column]]
        results = generate_with_images(self.backend.generate, requests, self.fetch_frames)
        out = {k: list(v) for k, v in batch.items()}
        out[self.result_column] = [asdict(r) for r in results]
        return out
