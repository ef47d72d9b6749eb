"""Versioned prompt files (`synth/prompts/<name>.v<N>.txt`), loaded from the installed package.

A prompt's version is part of its file name; the versions used by a run are stored in
every QA row (`prompt_version`), so a changed prompt is visible in the data.
"""
from __future__ import annotations

import functools
import importlib.resources
import re
from dataclasses import dataclass

_NAME = re.compile(r"^(?P<name>[a-z_]+)\.v(?P<version>\d+)\.txt$")


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    template: str

    @property
    def tag(self) -> str:
        return f"{self.name}.v{self.version}"

    def render(self, **values) -> str:
        return self.template.format(**values)


@functools.lru_cache(maxsize=None)
def available() -> dict[str, dict[int, Prompt]]:
    out: dict[str, dict[int, Prompt]] = {}
    for entry in importlib.resources.files("synth.prompts").iterdir():
        m = _NAME.match(entry.name)
        if m:
            out.setdefault(m["name"], {})[int(m["version"])] = Prompt(m["name"], int(m["version"]), entry.read_text())
    return out


def load_prompt(name: str, version: int | None = None) -> Prompt:
    """The prompt `name` at `version` (default: the newest); a clear error when missing."""
    versions = available().get(name)
    if not versions:
        raise KeyError(f"no prompt named {name!r}; have: {', '.join(sorted(available()))}")
    if version is None:
        version = max(versions)
    if version not in versions:
        raise KeyError(f"prompt {name!r} has versions {sorted(versions)}, not {version}")
    return versions[version]


@dataclass(frozen=True)
class PromptSet:
    """The prompts a stage uses: the newest version of each, unless pinned (`synth.prompts`,
    `verify.prompts` in the job config, e.g. {write_qa: 1}). Pinning keeps a dataset's wording
    reproducible; a new version is part of the stage's key, so its re-run asks again."""

    pins: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, pins: dict[str, int] | None) -> "PromptSet":
        for name, version in (pins or {}).items():
            load_prompt(name, version)  # unknown names or versions fail at config load
        return cls(tuple(sorted((pins or {}).items())))

    def __call__(self, name: str) -> Prompt:
        return load_prompt(name, dict(self.pins).get(name))

    def tags(self, names: tuple[str, ...]) -> str:
        return "+".join(self(n).tag for n in names)


NEWEST = PromptSet()
