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
    """Build the backend for `cfg.kind` (not yet set up).

    kind="vllm" has no per-call object: vLLM engines run as a ray.data.llm processor
    over a Dataset; use `synth.backends.vllm_backend.build_vllm_processor`.
    """
    if cfg.kind == "openai":
        from synth.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(cfg)
    if cfg.kind == "transformers":
        from synth.backends.transformers_backend import TransformersBackend

        return TransformersBackend(cfg)
    if cfg.kind == "vllm":
        raise ValueError(
            "kind='vllm' runs as a ray.data.llm processor over a Dataset, not as a per-call "
            "backend: use synth.backends.vllm_backend.build_vllm_processor(cfg, ...) in the "
            "runner (GPU nodes with ray[llm] installed)")
    raise ValueError(f"unknown backend kind {cfg.kind!r}")
