"""Backend-neutral request/result types shared by every model backend.

Results are data, not exceptions: a request that fails ends as a `ChatResult` with
`ok=False` and a machine-readable `error_reason`, so the caller can reject the item
with that reason and go on (DESIGN.md: nothing is silently dropped).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


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

    TRANSIENT = frozenset({rate_limited, server_error, timeout, network, malformed_response})


@runtime_checkable
class FrameLike(Protocol):
    """Anything with a timestamp and encoded image bytes (e.g. `pipeline.records.Frame`)."""

    timestamp_s: float
    image: bytes


@dataclass(frozen=True)
class FrameRef:
    """One encoded frame (JPEG/PNG bytes) and where it sits in the video, in seconds."""

    timestamp_s: float
    image: bytes
    mime: str = "image/jpeg"


@dataclass
class ChatRequest:
    """One chat completion request; `key` ties the result back to its item.

    Frames are sent in order, each preceded by a text marker of its timestamp
    ("Frame at 12.0 s:"), then the prompt, so the model can ground answers in time.
    """

    key: str
    system: str | None
    prompt: str
    frames: list[Any] = field(default_factory=list)  # FrameRef or any FrameLike
    max_tokens: int = 512
    temperature: float = 0.2
    json_mode: bool = False
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

    @classmethod
    def failure(
        cls, key: str, reason: str, message: str, *, attempts: int = 0, latency_s: float = 0.0
    ) -> "ChatResult":
        """A failed result with no texts."""
        return cls(key=key, texts=[], ok=False, error_reason=reason, error_message=message,
                   attempts=attempts, latency_s=latency_s)


def to_frame(obj: Any) -> Any:
    """A frame-like object from a frame or a dict (extra keys such as width are ignored)."""
    if isinstance(obj, dict):
        return FrameRef(timestamp_s=float(obj["timestamp_s"]), image=bytes(obj["image"]),
                        mime=obj.get("mime") or "image/jpeg")
    if not (hasattr(obj, "timestamp_s") and hasattr(obj, "image")):
        raise TypeError(f"a frame needs timestamp_s and image, got {type(obj).__name__}")
    return obj


def frame_mime(frame: Any) -> str:
    """The MIME type of a frame-like object (JPEG unless it says otherwise)."""
    return getattr(frame, "mime", None) or "image/jpeg"
