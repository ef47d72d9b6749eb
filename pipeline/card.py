"""The dataset card (README.md of the output): configs for `datasets.load_dataset` + counts.

Two facts of `datasets` (5.x) shape it:
- it cannot load a split with zero rows, so a config is listed under `configs:` once it
  holds at least one row; empty configs are named in the text;
- its cache key for a local folder is the folder name + config name + the card's config
  parameters, not the files' contents. With a glob, a re-run's new shards would be served
  from a stale cache, so the card lists every shard file explicitly (shard names are
  unique, and rewritten shards get new names).
"""
from __future__ import annotations

import posixpath
from typing import Any

import yaml

from pipeline.schema import CONFIGS, load_json_schema
from pipeline.store import DatasetStore

DEFAULT_CONFIG = "videos"


def render_card(store: DatasetStore, job_name: str, extra_sections: list[str] | None = None) -> str:
    counts = store.counts()
    configs: list[dict[str, Any]] = []
    for config in CONFIGS:
        if counts.rows.get(config, 0) == 0:
            continue
        files = [posixpath.relpath(p, store.root) for p in store.shard_paths(config)]
        entry: dict[str, Any] = {"config_name": config, "data_files": [{"split": "train", "path": files}]}
        if config == DEFAULT_CONFIG:
            entry["default"] = True
        configs.append(entry)
    front = yaml.safe_dump({"configs": configs, "tags": ["video", "long-video", "instruction-tuning"]},
                           sort_keys=False)
    lines = [f"---\n{front}---", f"# {job_name}", "",
             "Long-video instruction-tuning data curated by `longvideo-curation`.", "",
             "```python", "from datasets import load_dataset",
             *[f'{c["config_name"]} = load_dataset(PATH, "{c["config_name"]}", split="train")' for c in configs],
             "```", "", "| config | rows | what it holds |", "|---|---:|---|"]
    for config in CONFIGS:
        lines.append(f"| {config} | {counts.rows.get(config, 0)} | {load_json_schema(config)['description']} |")
    empty = [c for c in CONFIGS if counts.rows.get(c, 0) == 0]
    if empty:
        lines += ["", f"Empty so far (not loadable until they hold rows): {', '.join(empty)}."]
    lines += ["", "## Videos", "", "| status | count |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.status.items())]
    if counts.reasons:
        lines += ["", "| reject reason | count |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(counts.reasons.items(), key=lambda kv: -kv[1])]
    for section in extra_sections or []:
        lines += ["", section]
    lines += ["", "Schemas: JSON Schema per config (`schemas/` in the pipeline); every row was validated before it was written.", ""]
    return "\n".join(lines)


def write_card(store: DatasetStore, job_name: str, extra_sections: list[str] | None = None) -> None:
    store.write_text("README.md", render_card(store, job_name, extra_sections))
