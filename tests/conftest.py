"""Shared fixtures: one local Ray for the whole session, offline Hugging Face."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray instance shared by the tests that need one (~6 s to start)."""
    import ray

    from pipeline.runner import init_ray

    init_ray(None, num_cpus=2, object_store_mb=512)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_address(ray_local) -> str:
    """The session Ray's address, for `curate` subprocesses that join it (`tests.helpers.curate`)."""
    return ray_local.get_runtime_context().gcs_address
