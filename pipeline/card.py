"""The dataset card (README.md of the output): configs for `datasets.load_dataset` + counts.

Two facts of `datasets` (5.x) shape it:
- it cannot load a split with zero rows, so a config is listed under `configs:` once it
  holds at least one row; empty configs are named in the text;
- its cache key for a local folder is the folder name + config name + the card's config
  parameters, not the files' contents. With a glob, a re-run's new shards would be served
  from a stale cache, so the card lists every shard file explicitly (shard names are
  unique, and rewritten shards get new names). Listing files also means a reader never
  sees an orphan shard of an interrupted commit.

The card is rewritten after every commit from an in-memory `CardState`, so a run killed
at any moment leaves a loadable dataset without re-reading every shard per commit.
"""
from __future__ import annotations

import posixpath
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import yaml

from pipeline.schema import CONFIGS, load_json_schema
from pipeline.store import CommitResult, DatasetStore

DEFAULT_CONFIG = "videos"
FOOTER = "Every row was validated against its config's JSON Schema (`schemas/` in the pipeline) before it was written."


@dataclass
class CardState:
    """What the card shows: shard files and row counts per config, video outcomes."""

    files: dict[str, list[str]] = field(default_factory=dict)
    rows: Counter = field(default_factory=Counter)
    status: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)

    @classmethod
    def from_store(cls, store: DatasetStore) -> "CardState":
        counts = store.counts()
        return cls(files={c: store.shard_paths(c) for c in CONFIGS}, rows=Counter(counts.rows),
                   status=Counter(counts.status), reasons=Counter(counts.reasons))

    def add(self, result: CommitResult) -> None:
        for config, path in result.files.items():
            self.files.setdefault(config, []).append(path)
        self.rows.update(result.counts)
        self.status.update(result.video_status)
        self.reasons.update(result.video_reasons)


def render_card(store: DatasetStore, state: CardState, job_name: str,
                extra_sections: list[str] | None = None) -> str:
    configs: list[dict[str, Any]] = []
    for config in CONFIGS:
        files = sorted(posixpath.relpath(p, store.root) for p in state.files.get(config, []))
        if not files or state.rows.get(config, 0) == 0:
            continue
        entry: dict[str, Any] = {"config_name": config, "data_files": [{"split": "train", "path": files}]}
        if config == DEFAULT_CONFIG:
            entry["default"] = True
        configs.append(entry)
    # libyaml's emitter where PyYAML has it: the card is rewritten after every commit, listing every live file
    front = yaml.dump({"configs": configs, "tags": ["video", "long-video", "instruction-tuning"]},
                      Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)
    lines = [f"---\n{front}---", f"# {job_name}", "",
             "Long-video instruction-tuning data curated by `longvideo-curation`.", "",
             "```python", "from datasets import load_dataset",
             *[f'{c["config_name"]} = load_dataset(PATH, "{c["config_name"]}", split="train")' for c in configs],
             "```", "", "| config | rows | what it holds |", "|---|---:|---|"]
    for config in CONFIGS:
        lines.append(f"| {config} | {state.rows.get(config, 0)} | {load_json_schema(config)['description']} |")
    empty = [c for c in CONFIGS if state.rows.get(c, 0) == 0]
    if empty:
        lines += ["", f"Empty so far (not loadable until they hold rows): {', '.join(empty)}."]
    lines += ["", "## Videos", "", "| status | count |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(state.status.items())]
    if state.reasons:
        lines += ["", "| reject reason | count |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in state.reasons.most_common()]
    for section in extra_sections or []:
        lines += ["", section]
    lines += ["", FOOTER, ""]
    return "\n".join(lines)


def read_card(store: DatasetStore) -> tuple[str, list[str]]:
    """The job name and the report sections (quality, cost, signals) of the card as written, so a
    command that changes only the files (`curate compact`) rewrites it with the rest kept."""
    path = store.path("README.md")
    if not store.fs.exists(path):
        return "dataset", []
    text = store.fs.cat_file(path).decode().replace("\n" + FOOTER, "")
    name = next((line[2:] for line in text.splitlines() if line.startswith("# ")), "dataset")
    parts = text.split("\n## ")
    return name, ["## " + p.strip() + "\n" for p in parts[2:]]  # parts[1] is the Videos table


def load_config(url: str, config: str, *, storage_options: dict[str, Any] | None = None, **kwargs: Any):
    """`datasets.load_dataset` of one config, from a local path or an object store.

    A local path is loaded as today (`load_dataset(OUT, config)`: the card's `configs`). datasets
    (5.x) loads a dataset *folder* only from a local path or the Hub, so from an object store
    (`s3://...`) the card's file list for the config is read and passed to its Parquet builder
    with `storage_options`; `split`, `streaming` and the rest go through unchanged."""
    import datasets

    store = DatasetStore(url, storage_options=storage_options)
    if store.local:
        return datasets.load_dataset(store.root, config, **kwargs)
    front = store.fs.cat_file(store.path("README.md")).decode().split("---")[1]
    entry = next((c for c in yaml.safe_load(front)["configs"] if c["config_name"] == config), None)
    if entry is None:
        raise ValueError(f"{url}: config {config!r} holds no rows yet (see the dataset card)")
    protocol = store.fs.protocol if isinstance(store.fs.protocol, str) else store.fs.protocol[0]
    files = {split["split"]: [f"{protocol}://{store.path(p)}" for p in split["path"]] for split in entry["data_files"]}
    # a copy: datasets adds its own entries to the dict it is given
    return datasets.load_dataset("parquet", data_files=files, storage_options=dict(storage_options or {}), **kwargs)


def write_card(store: DatasetStore, job_name: str, state: CardState | None = None,
               extra_sections: list[str] | None = None) -> None:
    state = state or CardState.from_store(store)
    store.write_text("README.md", render_card(store, state, job_name, extra_sections))
