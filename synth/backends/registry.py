"""Backend kinds: what each `kind` is made of. The only place that maps a kind name to code.

A kind names its per-call backend class (None: it runs only as a Ray Data processor pass), the
processor module of a pass-only kind, the environment its workers need, and the resources of
one stage replica and of one pass. The runner, the configs and the stages ask this registry and
never name a kind. A new backend is its own module plus one entry in `KINDS` (plus one settings
field on `BackendConfig` when it has settings of its own).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from pipeline.stage import Resources
    from synth.backends.config import BackendConfig


def _resources(cpus: float, gpus: float, replicas: int, batch_size: int) -> "Resources":
    from pipeline.stage import Resources

    return Resources(cpus=cpus, gpus=gpus, concurrency=(1, replicas), batch_size=batch_size)


@dataclass(frozen=True)
class Kind:
    """One backend kind."""

    backend: str | None  # "module:Class" of its `ModelBackend`; None: it runs only as processor passes
    processor: str | None = None  # module with build_vllm_processor, split/merge_samples, request_dict_to_row
    env_vars: Callable[["BackendConfig"], tuple[str, ...]] = lambda cfg: ()
    # one stage replica holding the backend (actors), and one pass's actor pool over a round's requests
    actor_resources: Callable[["BackendConfig", int, int], "Resources"] = (
        lambda cfg, replicas, batch: _resources(0.25, 0.0, replicas, batch))
    pass_resources: Callable[["BackendConfig", int], "Resources"] = (
        lambda cfg, replicas: _resources(0.25, 0.0, replicas, 16))
    engine_gpus: Callable[["BackendConfig"], int] | None = None  # GPUs one engine needs (processor kinds)
    # True: the backend loads a model in its process (passes use an actor pool, released after
    # the pass); False: it is a client of a served model (passes run as tasks on pooled workers)
    loads_model: bool = True

    def make(self, cfg: "BackendConfig") -> Any:
        """The backend for `cfg` (not yet set up)."""
        if self.backend is None:
            raise ValueError(f"kind={cfg.kind!r} runs as a ray.data.llm processor over a Dataset, not as a per-call "
                             f"backend: use {self.processor}.build_vllm_processor(cfg, ...) in the runner (GPU "
                             "nodes with ray[llm] installed)")
        module, _, name = self.backend.partition(":")
        return getattr(importlib.import_module(module), name)(cfg)

    @property
    def needs_passes(self) -> bool:
        return self.backend is None

    def processor_module(self) -> Any:
        return importlib.import_module(self.processor) if self.processor else None


def _engine_gpus(cfg: "BackendConfig") -> int:
    """GPUs one vLLM engine needs: 0 on CPU (`vllm.device: cpu`), else its parallel workers."""
    if cfg.vllm.device == "cpu":
        return 0
    kw = cfg.vllm.engine_kwargs
    return int(kw.get("tensor_parallel_size", 1)) * int(kw.get("pipeline_parallel_size", 1))


KINDS: dict[str, Kind] = {
    "openai": Kind(
        "synth.backends.openai_backend:OpenAIBackend",
        env_vars=lambda cfg: (cfg.openai.api_key_env,) if cfg.openai.api_key_env else (),
        pass_resources=lambda cfg, replicas: _resources(0.25, 0.0, replicas, cfg.openai.concurrency * 4),
        loads_model=False),
    "transformers": Kind(
        "synth.backends.transformers_backend:TransformersBackend",
        actor_resources=lambda cfg, replicas, batch: _resources(1.0, cfg.transformers.num_gpus, replicas, batch),
        pass_resources=lambda cfg, replicas: _resources(1.0, cfg.transformers.num_gpus, replicas,
                                                        cfg.transformers.batch_size * 4)),
    "vllm": Kind(None, processor="synth.backends.vllm_backend", engine_gpus=_engine_gpus),
}


def kind_of(cfg: "BackendConfig") -> Kind:
    """The registry entry of `cfg.kind`."""
    try:
        return KINDS[cfg.kind]
    except KeyError:
        raise ValueError(f"unknown backend kind {cfg.kind!r}; known: {', '.join(KINDS)}") from None
