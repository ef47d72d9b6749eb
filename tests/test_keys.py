"""Stage keys are derived from the config sections each stage declares: none can forget a field.

Walks every stage of the default plan and of a fully configured one (teacher, verifier, the
teacher as judge, decontamination), changes every field of every section the stage declares
(recursing into sub-sections), and checks: a field that changes what a stage produces changes
exactly the keys of the stages that declare it, and `curate plan`'s reasoning redoes that
stage and every one after it; an execution-only field (`Section.execution_only`) changes no
key at all. A top-level config section that no stage declares must be one that holds no
stage's settings (inputs, workers, output, Ray).
"""
from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal

import pytest

pytestmark = pytest.mark.filterwarnings("ignore")
from pydantic import BaseModel

from pipeline.config import JobConfig, load_config
from pipeline.dryrun import _by_stage, _why
from pipeline.keys import stage_keys
from pipeline.plan import build_stages
from pipeline.section import Section
from pipeline.stage import leaves
from synth.prompting import available

WORK = Path("/nonexistent-work-dir")  # building stages touches no disk
# top-level sections no stage reads: where inputs come from, workers, output, Ray, the demo inputs
NOT_STAGE_CONFIG = {"name", "work_dir", "input", "demo", "media", "output", "ray"}
FULL = ["synth.teacher.kind=openai", "synth.teacher.model=teacher-m", "verify.verifier.kind=transformers",
        "verify.verifier.model=verifier-m", "verify.judge=teacher", "decontaminate.ids_files=[ids.txt]",
        "decontaminate.fingerprint_files=[fp.jsonl]"]
# values a generic change cannot find (formats with a grammar of their own)
SPECIAL: dict[str, Any] = {
    "fetch.youtube.po_tokens": ["mweb.gvs+" + "A" * 24],
    "fetch.youtube.visitor_data": "Cgt2aXNpdG9yMTIz",
    "fetch.youtube.impersonate": "chrome",
    "fetch.youtube.pot_provider": "bgutil_http",
    "fetch.identities": [{"name": "acct1"}],
    "fetch.rate_limit": "2M",
    "fetch.proxy": "socks5://127.0.0.1:1080",
    "verify.judge": "token_f1",
    "synth.teacher.kind": "transformers",  # kinds: synth/backends/registry.py
    "verify.verifier.kind": "openai",
}


def _get(cfg: BaseModel, path: str) -> Any:
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _set(data: dict, path: str, value: Any) -> dict:
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value
    return data


def _candidates(value: Any, annotation: Any) -> list[Any]:
    """Values other than `value` that the field's type admits, most likely valid first."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return [a for a in typing.get_args(annotation) if a != value]
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in args:
            out += _candidates(value, arg)
        return out
    if isinstance(value, bool) or annotation is bool:
        return [not value]
    if annotation is int or isinstance(value, int) and annotation is not float:
        base = value if isinstance(value, int) else 1
        return [base + 1, base - 1, base * 2, 1, 2, 64, 1024]
    if annotation is float or isinstance(value, float):
        base = value if isinstance(value, (int, float)) else 0.5
        return [base * 1.5 + 0.1, base / 2, base + 1, 0.5, 1.0]
    if annotation is str or isinstance(value, str):
        return [(value or "") + "x", "x"]
    if origin is list:
        item = typing.get_args(annotation)[0] if typing.get_args(annotation) else str
        return [list(value or []) + [c] for c in _candidates(None, item)[:2]]
    if origin is dict:
        return [{**(value or {}), "seed": 7}, {**(value or {}), "x-tag": "x"}]
    return []


def _fields(section: BaseModel, path: str, exec_only: bool = False):
    """(dotted path, field info, value, execution-only?) of every leaf field in `section`."""
    cls = type(section)
    for name, info in cls.model_fields.items():
        value = getattr(section, name)
        where, inner = f"{path}.{name}", exec_only or name in cls.execution_only
        if isinstance(value, Section):
            yield from _fields(value, where, inner)
        else:
            yield where, info, value, inner


def _keys(cfg: JobConfig) -> dict[str, dict[str, str]]:
    return _by_stage(stage_keys(build_stages(cfg, WORK)))


def _changed(cfg: JobConfig, path: str, info: Any, value: Any) -> tuple[Any, JobConfig] | None:
    """The first candidate value that makes a valid config (and buildable stages) differing at `path`."""
    if path.endswith(".prompts"):  # pin a version other than the one in use, where one exists
        return _prompt_pin(cfg, path)
    cands = [SPECIAL[path]] if path in SPECIAL else _candidates(value, info.annotation)
    for cand in cands:
        try:
            new = JobConfig.model_validate(_set(cfg.model_dump(mode="json"), path, cand))
            build_stages(new, WORK)
        except (ValueError, TypeError):
            continue
        if _get(new, path) != value:
            return cand, new
    return None


def _prompt_pin(cfg: JobConfig, path: str) -> tuple[Any, JobConfig] | None:
    """Pin a prompt the stage uses to a version other than the one in use (None: no other exists)."""
    owner = "synthesize" if path.startswith("synth.") else "verify"
    in_use = dict(t.rsplit(".v", 1) for t in _keys(cfg)[owner]["prompts"].split("+"))
    for name, version in in_use.items():
        others = [v for v in available()[name] if v != int(version)]
        if others:
            pin = {name: others[0]}
            return pin, JobConfig.model_validate(_set(cfg.model_dump(mode="json"), path, pin))
    return None, cfg


def _plan_redo(before: dict, after: dict) -> set[str]:
    """The stages `curate plan` says a committed video redoes, given its row's keys and the new ones."""
    row = {"status": "accepted", "reject_reason": None,
           "stage_keys": [{"stage": s, "part": p, "value": v} for s, parts in before.items() for p, v in parts.items()]}
    return set(_why(row, after, force=False)["stages"])


PLANS = {"default": [], "full": FULL}


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_every_declared_field_keys_exactly_its_stages(plan):
    cfg = load_config(None, PLANS[plan])
    stages = leaves(build_stages(cfg, WORK))
    order = [s.name for s in stages]
    base = _keys(cfg)
    declared = {path: [s.name for s in stages if any(path == p or path.startswith(p + ".") for p in s.sections())]
                for s in stages for path in s.sections()}
    for stage in stages:
        for path, section in stage.sections().items():
            assert section == _get(cfg, path), f"{stage.name} declares {path} but holds another section"
    checked = execution = 0
    seen: set[str] = set()
    for spath in sorted(declared):
        for path, info, value, exec_only in _fields(_get(cfg, spath), spath):
            if path in seen:
                continue
            seen.add(path)
            got = _changed(cfg, path, info, value)
            assert got is not None, f"no valid change found for {path}: add one to SPECIAL"
            cand, new = got
            after = _keys(new)
            changed = {s for s in order if base.get(s) != after.get(s)}
            if exec_only:
                execution += 1
                assert not changed, f"{path} is execution-only but changed the keys of {changed}"
                continue
            owners = {s for p, names in declared.items() if path == p or path.startswith(p + ".") for s in names}
            if path.endswith(".prompts") and cand is None:
                assert not changed  # only one version of every prompt: nothing to pin differently
                continue
            checked += 1
            assert changed == owners, f"{path} -> {cand!r}: changed {changed}, declared by {owners}"
            first = min(order.index(s) for s in owners)
            assert _plan_redo(base, after) == set(order[first:]), (path, _plan_redo(base, after))
    assert checked > 40 and execution > 10, (checked, execution)
    print(f"{plan}: {checked} fields change keys, {execution} execution-only fields change none")
    if plan != "full":
        return
    # a section of the job config that no stage of the full plan declares holds no stage's settings
    top = {p.split(".")[0] for p in declared}
    assert set(JobConfig.model_fields) - top <= NOT_STAGE_CONFIG, set(JobConfig.model_fields) - top - NOT_STAGE_CONFIG


def test_a_changed_filter_or_dedupe_bound_is_replanned():
    """The measured bug: these two changes planned 'unchanged (skipped)'."""
    cfg = load_config(None, [])
    base = _keys(cfg)
    for change in ("filter.static_video=0.01", "dedupe.match.max_hamming=3"):
        after = _keys(load_config(None, [change]))
        stage = change.split(".")[0]
        assert base[stage]["config"] != after[stage]["config"]
        assert _plan_redo(base, after) == {"filter", "dedupe"} if stage == "filter" else {"dedupe"}
