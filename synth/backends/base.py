"""The one model-backend interface (teacher and verifier) and its factory."""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from synth.backends.config import BackendConfig
from synth.backends.types import ChatRequest, ChatResult


@runtime_checkable
class ModelBackend(Protocol):
    """A model that answers chat requests; results come back in request order.

    `setup()` loads / connects once per worker (call it inside the Ray actor, not in the
    driver), `generate()` never raises for a per-request failure, `close()` frees resources.
    """

    name: str

    def setup(self) -> None: ...

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResult]: ...

    def close(self) -> None: ...


def make_backend(cfg: BackendConfig) -> ModelBackend:
    """Build the backend for `cfg.kind` (not yet set up); synth/backends/registry.py maps kinds."""
    from synth.backends.registry import kind_of

    return kind_of(cfg).make(cfg)
