"""Imports run only down: core <- domain packages (in their order) <- orchestration.

Core is what every package shares (the data model, config sections, the stage contract, keys,
media reasons and opening media); the domain packages build on it and on the packages before
them; the orchestration (config, plan, job, runner, plan/check/report, CLI) on everything.
"""
from __future__ import annotations

import ast

from tests.helpers import REPO

LAYERS = [
    ["pipeline.records", "pipeline.section", "pipeline.classify", "pipeline.keys", "pipeline.stage", "pipeline.media"],
    ["pipeline.schema", "pipeline.samples", "pipeline.footage", "pipeline.trainer_media", "pipeline.budget"],
    ["pipeline.storelog", "pipeline.store", "pipeline.demo"],
    ["pipeline.acquire"], ["pipeline.segment"], ["pipeline.filter"], ["synth.backends"], ["synth"],
    ["pipeline.config", "pipeline.card", "pipeline.report", "pipeline.export", "pipeline.export_qwen",
     "pipeline.check"],
    ["pipeline.viewer"],
    ["pipeline.plan", "pipeline.services", "pipeline.frame_keepers"], ["pipeline.runner"], ["pipeline.passes"],
    ["pipeline.job"], ["pipeline.dryrun"], ["pipeline.cli"],
]
# within the core, stage and keys name each other (lazily, inside functions): one unit
SAME = {frozenset({"pipeline.stage", "pipeline.keys"})}


def _unit(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "synth":
        return "synth.backends" if parts[1:2] == ["backends"] else "synth"
    return ".".join(parts[:2])


def _level(unit: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if unit in names)


def back_arrows() -> list[tuple[str, str]]:
    out = []
    for pkg in ("pipeline", "synth"):
        for path in (REPO / pkg).rglob("*.py"):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            if module == "pipeline":
                continue
            src = _unit(module)
            for node in ast.walk(ast.parse(path.read_text())):
                names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                    [a.name for a in node.names] if isinstance(node, ast.Import) else []
                for name in names:
                    if name.split(".")[0] not in ("pipeline", "synth") or name in ("pipeline", "synth"):
                        continue
                    dst = _unit(name)
                    if dst != src and frozenset({src, dst}) not in SAME and _level(dst) > _level(src):
                        out.append((module, name))
    return out


def test_every_module_has_a_layer():
    for pkg in ("pipeline", "synth"):
        for path in (REPO / pkg).rglob("*.py"):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            if module != "pipeline":
                _level(_unit(module))


def test_no_import_runs_back_up():
    assert back_arrows() == []
