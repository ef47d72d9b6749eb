"""tests/consumers run the consumers' own code in their own venv (.ci/consumers-env)."""
from __future__ import annotations

import importlib.util
import os

import pytest

# verl filters prompts through `datasets` workers, which fork: a child of a process whose torch has
# started its OpenMP pool hangs (the pool's threads do not survive the fork). One thread, no pool.
os.environ.setdefault("OMP_NUM_THREADS", "1")

NEEDED = ("verl", "lmms_eval", "qwen_vl_utils", "torchvision")


@pytest.fixture(autouse=True, scope="session")
def consumers_env() -> None:
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"the consumers' packages are missing ({', '.join(missing)}): build the side env with "
                    "`.ci/consumers-env` and run `.ci-consumers-venv/bin/python -m pytest -q tests/consumers`",
                    pytrace=False)
