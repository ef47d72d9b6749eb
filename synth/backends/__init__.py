"""Model backends (teacher for QA synthesis, verifier for cross-verification).

One interface, `ModelBackend` (setup / generate / close), built by `make_backend` for
kind "openai" (HTTP endpoint) and "transformers" (in-process model); kind "vllm" runs as a
ray.data.llm processor (`synth.backends.vllm_backend`). Heavy imports (torch,
transformers, ray.data.llm) happen only in the modules that need them.
"""
from synth.backends.base import ModelBackend, make_backend
from synth.backends.config import BackendConfig, OpenAIConfig, TransformersConfig, VLLMConfig
from synth.backends.messages import frame_marker, request_to_messages
from synth.backends.parsing import MALFORMED_JSON, parse_json_reply
from synth.backends.types import ChatRequest, ChatResult, ErrorReason, FramesUnavailable

__all__ = [
    "BackendConfig", "ChatRequest", "ChatResult", "ErrorReason", "FramesUnavailable", "MALFORMED_JSON",
    "ModelBackend", "OpenAIConfig", "TransformersConfig", "VLLMConfig", "frame_marker",
    "make_backend", "parse_json_reply", "request_to_messages",
]
