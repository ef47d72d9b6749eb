"""Frame keepers (passes): a wave's JPEG frames stay on the nodes that decoded them."""
from __future__ import annotations

from typing import Any

from pipeline.records import VideoTask


class _FrameKeeper:
    """A node's frames of the current wave: video key -> JPEG bytes in frame order."""

    def __init__(self) -> None:
        self.frames: dict[str, list[bytes]] = {}

    def put(self, key: str, images: list[bytes]) -> int:
        self.frames[key] = images
        return len(images)

    def get(self, key: str) -> list[bytes]:
        return self.frames[key]

    def drop(self, keys: list[str]) -> int:
        return sum(self.frames.pop(k, None) is not None for k in keys)

    def held_bytes(self) -> int:
        return sum(len(b) for images in self.frames.values() for b in images)


class FrameKeepers:
    """One `_FrameKeeper` actor per alive node (no CPU reserved), named `<prefix>-<node id>`.

    A frames key is `<prefix>-<node id>|<video id>`: it names the keeper that holds the
    frames, so any worker on any node can fetch them. A node that dies takes its keeper
    with it; the requests of its videos then fail with `frames_unavailable` and those
    videos are retried by the next run.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.handles: dict[str, Any] = {}

    def ensure(self) -> None:
        """A keeper on every alive node that has none yet (nodes may have joined)."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        keeper = ray.remote(num_cpus=0, max_restarts=0)(_FrameKeeper)
        for node in ray.nodes():
            node_id = node["NodeID"]
            if node["Alive"] and node_id not in self.handles:
                self.handles[node_id] = keeper.options(
                    name=f"{self.prefix}-{node_id}", lifetime=None,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()

    def drop(self, keys: list[str]) -> None:
        import ray

        by_node: dict[str, list[str]] = {}
        for key in keys:
            name, _, _ = key.partition("|")
            by_node.setdefault(name, []).append(key)
        for name, group in by_node.items():
            handle = self.handles.get(name[len(self.prefix) + 1:])
            if handle is not None:
                try:
                    ray.get(handle.drop.remote(group), timeout=60)
                except Exception:  # noqa: BLE001 - a lost node's frames are gone anyway
                    pass

    def close(self) -> None:
        import ray

        for handle in self.handles.values():
            try:
                ray.kill(handle)
            except Exception:  # noqa: BLE001 - already dead with its node
                pass
        self.handles.clear()


def _keeper(name: str) -> Any:
    import ray

    return ray.get_actor(name)


def store_frames(prefix: str, task: VideoTask) -> None:
    """Move a task's JPEG bytes into this node's keeper; the task keeps frame metadata and the key."""
    import ray

    if not task.frames:
        return
    name = f"{prefix}-{ray.get_runtime_context().get_node_id()}"
    key = f"{name}|{task.video_id}"
    ray.get(_keeper(name).put.remote(key, [f.image for f in task.frames]))
    for frame in task.frames:
        frame.image = b""
    task.frames_key = key


def fetch_frames(key: str) -> list[bytes]:
    """The JPEG bytes of a video's frames, from the keeper that `key` names (any node).

    Raises `FramesUnavailable` when the keeper or its entry is gone (its node was lost)."""
    import ray

    from synth.backends.types import FramesUnavailable

    name = key.partition("|")[0]
    try:
        return ray.get(_keeper(name).get.remote(key), timeout=300)
    except Exception as exc:  # noqa: BLE001 - ActorDiedError, ValueError (no such actor), KeyError ...
        raise FramesUnavailable(f"frames {key!r}: {type(exc).__name__}: {exc}") from exc
