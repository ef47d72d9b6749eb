"""One YAML file per job, loaded into typed models; `--set a.b=value` overrides.

Every section forbids unknown keys, so a typo fails before any work starts with the key's
path and the keys that are allowed there. The content hash of the resolved config is
stored with every output row.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Iterable

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from pipeline.acquire.config import FetchConfig, InputConfig
from pipeline.section import Section
from pipeline.filter.config import DecontaminateConfig, DedupeConfig, FilterConfig
from pipeline.segment.config import SegmentConfig, SelectConfig
from synth.config import SynthConfig, VerifyConfig


class DemoConfig(Section):
    """Make sample videos with known cuts and use them as (extra) input: offline demo."""

    videos: int = Field(4, ge=1, description="how many good sample videos to generate")
    scene_seconds: list[float] = Field(default_factory=lambda: [4.0, 6.0, 5.0, 5.0],
                                       description="scene durations of each sample video")
    fps: int = Field(24, ge=1)
    width: int = Field(320, ge=16)
    height: int = Field(180, ge=16)
    include_bad: bool = Field(True, description="also add a corrupt file, a too-short video and a malformed ID")


class MediaConfig(Section):
    """The per-video media step: fetch -> segment + sample -> select, in one process per video.

    The downloaded file exists only on the node that fetched it, so everything that reads
    it runs there, in one Ray actor call; frames (JPEG bytes) and subtitle text travel on.
    """

    min_workers: int = Field(1, ge=1, description="media actors started at once (a warm pool across the nodes) "
                             "when the media step holds a GPU (TransNetV2) and so runs as actors; otherwise "
                             "it runs as tasks on pooled workers")
    max_workers: int = Field(64, ge=1, description="most media workers in the cluster; Ray Data grows the "
                             "pool up to this as free CPUs allow")
    cpus_per_worker: float = Field(0.5, gt=0, description="CPUs reserved per media worker. 0.5: two workers per "
                                   "core, so one's download overlaps the other's decode (a worker decodes on one "
                                   "thread, segment.thread_type NONE); 1.0 when inputs are local or cached and "
                                   "decoding is all there is")
    allow_node_local: bool = Field(False, description="a multi-node cluster whose nodes do not share work_dir needs "
                                   "fetch.storage_url, or the committed rows would name files that only one node "
                                   "has; true: run anyway, with a warning, and trust media_node in each row")


    @model_validator(mode="after")
    def _pool(self) -> "MediaConfig":
        if self.min_workers > self.max_workers:
            raise ValueError(f"media.min_workers ({self.min_workers}) exceeds media.max_workers ({self.max_workers})")
        return self


class OutputConfig(Section):
    """How the dataset directory is committed."""

    commit_every: int = Field(64, ge=1, description="videos per crash-safe commit (one shard per config)")
    commit_interval_s: float = Field(60.0, gt=0, description="also commit when the oldest uncommitted finished "
                                     "video has waited this long, so a slow stream still commits as it goes")
    compression: str = Field("zstd", description="Parquet compression codec")
    compact_after: int = Field(64, ge=1, description="a run that ends with this many commits (chunks) not yet "
                               "compacted merges them into few large shards (`curate compact` does it any time)")
    shard_mb: int = Field(256, ge=1, description="target size of a compacted shard file, MB")

    execution_only: ClassVar[frozenset[str]] = frozenset({"compact_after", "shard_mb"})


class RayConfig(Section):
    """Where the plan runs. Not part of the config hash: it does not change the data."""

    address: str | None = Field(None, description="cluster address; None: RAY_ADDRESS or a local Ray sized to the machine")
    num_cpus: int | None = Field(None, ge=1, description="local Ray only: CPUs to use (default: all)")
    object_store_memory_mb: int | None = Field(None, ge=64, description="local Ray only")
    log_to_driver: bool = Field(False, description="forward worker logs to the console")


class JobConfig(Section):
    """A whole curation job. See jobs/*.yaml and the README's configuration reference."""

    name: str = Field("job", description="job name, shown in summaries and the dataset card")
    work_dir: str = Field(".curate", description="caches (downloads, demo media); relative to the current directory")
    input: InputConfig = Field(default_factory=InputConfig)
    demo: DemoConfig | None = Field(None, description="generate offline sample inputs")
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    segment: SegmentConfig = Field(default_factory=SegmentConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig, description="content filters on the segment signals")
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig, description="near-duplicate videos across the dataset")
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig,
                                               description="keep benchmark (evaluation-set) videos out")
    synth: SynthConfig = Field(default_factory=SynthConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    ray: RayConfig = Field(default_factory=RayConfig)

    def content_hash(self) -> str:
        """16 hex chars of sha256 over everything that shapes the data (not `ray`)."""
        payload = self.model_dump(mode="json", exclude={"ray"})
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key and what is allowed."""


def parse_overrides(pairs: Iterable[str]) -> list[tuple[list[str], Any]]:
    """`a.b=value` strings -> (path, YAML-parsed value)."""
    out = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: value is not valid YAML: {exc}") from None
        out.append((key.strip().split("."), value))
    return out


def _apply(raw: dict[str, Any], path: list[str], value: Any) -> None:
    node = raw
    for depth, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[:depth + 1])} is not a section")
        node = child
    node[path[-1]] = value


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: Any = JobConfig
    for part in loc:
        if isinstance(part, int):  # an item of a list of sections: the item's own model
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def _explain(err: ValidationError, origin: str) -> str:
    lines = [f"invalid job config ({origin}):"]
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(str(p) for p in loc) or "<root>"
        if e["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            allowed = ", ".join(parent.model_fields) if parent else "?"
            lines.append(f"  {key}: unknown key; allowed here: {allowed}")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_config(path: str | Path | None, overrides: Iterable[str] = ()) -> JobConfig:
    """Read a job YAML (or defaults when None), apply overrides, validate everything."""
    raw: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        origin = str(path)
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
    for key_path, value in parse_overrides(overrides):
        _apply(raw, key_path, value)
    try:
        return JobConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origin)) from None
