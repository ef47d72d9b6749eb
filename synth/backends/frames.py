"""Frames whose bytes wait in a frame store: fetched by the worker that sends the request.

In `passes`, the driver's requests carry frame metadata and a `frames_key` only (the
bytes stay in a keeper on the node that decoded them, see `pipeline.runner`). The worker
that answers a batch fetches each video's bytes once and fills the requests in. Ray-free:
the fetch function is handed in by the runner.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

from synth.backends.types import ChatRequest, ChatResult, ErrorReason, FramesUnavailable

FetchFrames = Callable[[str], list[bytes]]


def needs_images(req: ChatRequest) -> bool:
    return bool(req.frames_key) and any(not f.image for f in req.frames)


def with_images(requests: Sequence[ChatRequest], fetch: FetchFrames | None
                ) -> list[ChatRequest | ChatResult]:
    """Each request with its frames' bytes filled in, or a failed result if they are gone."""
    cache: dict[str, list[bytes] | FramesUnavailable] = {}
    out: list[ChatRequest | ChatResult] = []
    for req in requests:
        if not needs_images(req):
            out.append(req)
            continue
        key = str(req.frames_key)
        if key not in cache:
            try:
                if fetch is None:
                    raise FramesUnavailable(f"frames {key!r}: no frame store to fetch them from")
                cache[key] = fetch(key)
            except FramesUnavailable as exc:
                cache[key] = exc
        images = cache[key]
        if isinstance(images, FramesUnavailable):
            out.append(ChatResult.failure(req.key, ErrorReason.frames_unavailable, str(images)[:2000]))
            continue
        try:
            frames = [replace(f, image=images[f.index]) for f in req.frames]
        except IndexError:
            out.append(ChatResult.failure(req.key, ErrorReason.frames_unavailable,
                                          f"frames {key!r} hold {len(images)} frames, the request names others"))
            continue
        out.append(replace(req, frames=frames, frames_key=None))
    return out


def generate_with_images(generate: Callable[[list[ChatRequest]], list[ChatResult]], requests: Sequence[ChatRequest],
                         fetch: FetchFrames | None) -> list[ChatResult]:
    """`generate` over the requests whose frames could be fetched; the others fail as data."""
    ready = with_images(requests, fetch)
    todo = [r for r in ready if isinstance(r, ChatRequest)]
    answers = iter(generate(todo) if todo else [])
    return [next(answers) if isinstance(r, ChatRequest) else r for r in ready]
