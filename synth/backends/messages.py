"""One place that turns a `ChatRequest` into chat messages, for every backend.

The OpenAI-style form (`image_url` parts with base64 data URLs) is what OpenAI-compatible
servers and ray.data.llm's vLLM processor both accept; the Hugging Face form uses
`{"type": "image"}` placeholders with the PIL images passed separately. Both use the same
timestamp marker so every backend shows the model the same prompt.
"""
from __future__ import annotations

import base64
from typing import Any

from synth.backends.types import ChatRequest


def frame_marker(timestamp_s: float) -> str:
    """The text placed before each frame so the model sees its timestamp."""
    return f"Frame at {timestamp_s:.1f} s:"


def data_url(image: bytes, mime: str = "image/jpeg") -> str:
    """A base64 data URL for encoded image bytes."""
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


def _system(req: ChatRequest) -> list[dict[str, Any]]:
    return [{"role": "system", "content": req.system}] if req.system else []


def video_marker(frames: list[Any]) -> str:
    """The text placed before a video: when its frames were taken (the server may not know)."""
    return "Video frames sampled at " + ", ".join(f"{float(f.timestamp_s):.1f}" for f in frames) + " s:"


def frame_clock_ms(frames: list[Any]) -> list[int]:
    """The frames' times as indices on a millisecond clock: what a video processor is given
    (with fps 1000) so the times it renders are the frames' real times, not a frame-count guess."""
    ms = [int(round(float(f.timestamp_s) * 1000)) for f in frames]
    for i in range(1, len(ms)):  # strictly increasing (frames closer than 1 ms stay distinct)
        ms[i] = max(ms[i], ms[i - 1] + 1)
    return ms


def video_io_kwargs(frames: list[Any]) -> dict[str, Any]:
    """vLLM's per-request `media_io_kwargs["video"]` for a `data:video/jpeg` frame list: every frame
    kept (`num_frames: -1`; the server's default keeps the first 32) and the frames' real times
    (`fps` 1000 with millisecond `frames_indices`; without them vLLM reads the list at 1 fps)."""
    ms = frame_clock_ms(frames)
    return {"num_frames": -1, "fps": 1000.0, "frames_indices": ms, "total_num_frames": ms[-1] + 1}


def request_to_messages(req: ChatRequest, as_video: bool = False) -> list[dict[str, Any]]:
    """OpenAI chat messages: per frame a timestamp text part then an `image_url` part; or, as
    a video, the frames' timestamps then one `video_url` whose data URL lists the JPEG frames
    (`data:video/jpeg;base64,<f1>,<f2>,...`: how vLLM's OpenAI server takes pre-sampled frames).

    Text-only requests get a plain string content (the most widely accepted form).
    """
    if not req.frames:
        return _system(req) + [{"role": "user", "content": req.prompt}]
    if as_video and len(req.frames) >= 2:
        frames = ",".join(base64.b64encode(bytes(f.image)).decode("ascii") for f in req.frames)
        parts = [{"type": "text", "text": video_marker(req.frames)},
                 {"type": "video_url", "video_url": {"url": f"data:video/jpeg;base64,{frames}"}},
                 {"type": "text", "text": req.prompt}]
        return _system(req) + [{"role": "user", "content": parts}]
    parts: list[dict[str, Any]] = []
    for fr in req.frames:
        parts.append({"type": "text", "text": frame_marker(float(fr.timestamp_s))})
        parts.append({"type": "image_url",
                      "image_url": {"url": data_url(bytes(fr.image), fr.mime)}})
    parts.append({"type": "text", "text": req.prompt})
    return _system(req) + [{"role": "user", "content": parts}]


def request_to_hf_messages(req: ChatRequest, frames: list[Any] | None = None,
                           as_video: bool = False) -> list[dict[str, Any]]:
    """Hugging Face chat-template messages: `{"type": "image"}` placeholders, same markers; or,
    as a video, the frames' times then one `{"type": "video"}` (the processor gets the frames
    and their metadata: Qwen3-VL renders the times itself, Qwen2.5-VL encodes them in mRoPE).

    `frames` overrides `req.frames` (e.g. after subsampling to max_frames).
    """
    frames = req.frames if frames is None else frames
    parts: list[dict[str, Any]] = []
    if as_video:
        parts += [{"type": "text", "text": video_marker(frames)}, {"type": "video"}]
    for fr in frames if not as_video else []:
        parts.append({"type": "text", "text": frame_marker(float(fr.timestamp_s))})
        parts.append({"type": "image"})
    parts.append({"type": "text", "text": req.prompt})
    system = [{"role": "system", "content": [{"type": "text", "text": req.system}]}] if req.system else []
    return system + [{"role": "user", "content": parts}]


def request_to_plain_prompt(req: ChatRequest, image_token: str | None, frames: list[Any] | None = None) -> str:
    """A template-free prompt for processors without a chat template."""
    frames = req.frames if frames is None else frames
    lines = [req.system] if req.system else []
    for fr in frames:
        lines.append(f"{frame_marker(float(fr.timestamp_s))} {image_token or ''}".rstrip())
    lines.append(req.prompt)
    return "\n".join(lines) + "\n"
