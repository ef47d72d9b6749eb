"""Backend kinds come from synth/backends/registry.py; nothing else names one.

The example adds a backend the way a contributor would: its module (here the `EchoBackend`
class below stands in for synth/backends/echo_backend.py) and one entry in `KINDS`. The config
accepts the kind, the factory builds it, the stage holds it, the resources and environment
come from the entry, and the execution mode asks the entry whether it needs passes.
"""
from __future__ import annotations

import ast
from typing import Sequence

import pytest

from synth.backends.base import make_backend
from synth.backends.config import BackendConfig
from synth.backends.registry import KINDS, Kind, kind_of
from synth.backends.types import ChatRequest, ChatResult
from synth.config import SynthConfig
from synth.synthesize import SynthesizeStage
from tests.helpers import REPO


class EchoBackend:
    """A model that repeats the prompt: the whole of a new backend's module."""

    def __init__(self, cfg: BackendConfig) -> None:
        self.name = cfg.model

    def setup(self) -> None:
        pass

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        return [ChatResult(key=r.key, texts=[r.prompt] * r.n, ok=True) for r in requests]

    def close(self) -> None:
        pass


@pytest.fixture
def echo_kind(monkeypatch):
    monkeypatch.setitem(KINDS, "echo", Kind(f"{__name__}:EchoBackend", env_vars=lambda cfg: ("ECHO_TOKEN",)))


def test_a_new_kind_is_one_entry(echo_kind):
    cfg = BackendConfig(kind="echo", model="echo-1")
    backend = make_backend(cfg)
    assert isinstance(backend, EchoBackend)
    assert backend.generate([ChatRequest(key="k", system=None, prompt="hi", n=2)])[0].texts == ["hi", "hi"]
    assert cfg.env_vars() == ("ECHO_TOKEN",) and cfg.actor_resources(3, 2).concurrency == (1, 3)
    assert SynthConfig(teacher=cfg).execution_mode(None) == "actors"
    stage = SynthesizeStage(SynthConfig(teacher=cfg))
    stage.setup()
    assert isinstance(stage.backends["teacher"], EchoBackend) and stage.env_vars == ("ECHO_TOKEN",)


def test_an_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backend kind 'echo'; known: openai, transformers, vllm"):
        BackendConfig(kind="echo")
    assert kind_of(BackendConfig(kind="vllm")).needs_passes


def test_nothing_outside_synth_backends_names_a_kind():
    """No comparison with a kind's name, no import of a kind's module, outside synth/backends/."""
    found = []
    for pkg in ("pipeline", "synth"):
        for path in (REPO / pkg).rglob("*.py"):
            if path.parent.name == "backends":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and node.value in KINDS:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[-1] in (
                        "openai_backend", "transformers_backend", "vllm_backend"):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} imports {node.module}")
    assert found == []
