"""Backend-neutral request/result types shared by every model backend.

Results are data, not exceptions: a request that fails ends as a `ChatResult` with
`ok=False` and a machine-readable `error_reason`, so the caller can reject the item
with that reason and go on (DESIGN.md: nothing is silently dropped).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.records import Frame


class ErrorReason:
    """Machine-readable `ChatResult.error_reason` values."""

    rate_limited = "rate_limited"  # HTTP 429 after all retries
    server_error = "server_error"  # HTTP 5xx after all retries
    timeout = "timeout"  # no answer within timeout_s after all retries
    network = "network"  # connection refused / reset after all retries
    bad_request = "bad_request"  # HTTP 4xx (not 401/403/429), or an undecodable frame
    auth = "auth"  # HTTP 401/403: the key is missing or wrong, retrying cannot help
    empty_response = "empty_response"  # 200 but no choices / empty content
    malformed_response = "malformed_response"  # 200 but the body is not the OpenAI shape
    model_error = "model_error"  # an in-process model raised while generating
    frames_unavailable = "frames_unavailable"  # the frame store lost the request's frames (node loss)
    frames_dropped = "frames_dropped"  # the server saw fewer visual tokens than the frames sent make

    # retried by the backend itself (with backoff); after the last retry the request fails
    TRANSIENT = frozenset({rate_limited, server_error, timeout, network, malformed_response, empty_response})


@dataclass
class ChatRequest:
    """One chat completion request; `key` ties the result back to its item.

    Frames are sent in order, each preceded by a text marker of its timestamp
    ("Frame at 12.0 s:"), then the prompt, so the model can ground answers in time.
    """

    key: str
    system: str | None
    prompt: str
    frames: list[Frame] = field(default_factory=list)
    frames_key: str | None = None  # frames' bytes are in a frame store under this key (passes)
    max_tokens: int = 512
    temperature: float = 0.2
    json_mode: bool = False
    # the reply's JSON Schema, {"name": ..., "schema": ...} (synth/replies.py); None: any JSON object
    json_schema: dict[str, Any] | None = None
    n: int = 1
    seed: int | None = None  # per-request sampling seed (engines that take one)

    def __post_init__(self) -> None:
        # Rows that went through Ray Data / Arrow carry frames as plain dicts.
        self.frames = [to_frame(f) for f in self.frames]


@dataclass
class ChatResult:
    """The outcome of one `ChatRequest`, in the same order as the requests."""

    key: str
    texts: list[str]
    ok: bool
    error_reason: str | None = None
    error_message: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    visual_tokens: int = 0
    attempts: int = 0
    latency_s: float = 0.0
    cached: bool = False  # served from results already paid for (not sent again, not counted again)
    cached_tokens: int = 0  # prompt tokens the model served from its prefix cache (not prefilled again)

    @classmethod
    def failure(
        cls, key: str, reason: str, message: str, *, attempts: int = 0, latency_s: float = 0.0
    ) -> "ChatResult":
        """A failed result with no texts."""
        return cls(key=key, texts=[], ok=False, error_reason=reason, error_message=message,
                   attempts=attempts, latency_s=latency_s)


class FramesUnavailable(RuntimeError):
    """A request's frames could not be fetched from the frame store (its node was lost)."""


def to_frame(obj: Any) -> Frame:
    """A `Frame` from a frame or its dict (rows that went through Ray Data / Arrow)."""
    if isinstance(obj, Frame):
        return obj
    if isinstance(obj, dict):
        fields = {k: obj[k] for k in ("timestamp_s", "image", "width", "height", "scene_index", "mime", "index")
                  if obj.get(k) is not None}
        fields["timestamp_s"], fields["image"] = float(fields["timestamp_s"]), bytes(fields.get("image", b""))
        return Frame(**fields)
    raise TypeError(f"a frame must be a pipeline.records.Frame or its dict, got {type(obj).__name__}")
