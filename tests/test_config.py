"""Job configs: typed, overridable, bad keys fail early with the allowed keys named."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config
from tests.helpers import REPO


def test_demo_job_loads_and_hash_is_stable():
    a = load_config(REPO / "jobs" / "demo.yaml")
    b = load_config(REPO / "jobs" / "demo.yaml")
    assert a.content_hash() == b.content_hash() and len(a.content_hash()) == 16
    assert a.demo is not None


def test_overrides_change_values_and_hash_but_not_for_ray_settings():
    base = load_config(REPO / "jobs" / "demo.yaml")
    moved = load_config(REPO / "jobs" / "demo.yaml", ["fetch.max_height=480"])
    assert moved.fetch.max_height == 480 and moved.content_hash() != base.content_hash()
    elsewhere = load_config(REPO / "jobs" / "demo.yaml", ["ray.address=ray://head:10001"])
    assert elsewhere.content_hash() == base.content_hash()


@pytest.mark.parametrize("override, words", [
    (["fetch.max_hieght=480"], ["fetch.max_hieght", "unknown key", "max_height"]),
    (["fetch.max_height=tall"], ["fetch.max_height", "integer"]),
    (["output.commit_every=0"], ["output.commit_every", "greater than or equal to 1"]),
    (["nonsense=1"], ["nonsense", "allowed here", "fetch"]),
    (["fetch"], ["key=value"]),
])
def test_bad_keys_and_values_name_the_key(override, words):
    with pytest.raises(ConfigError) as info:
        load_config(None, override)
    for word in words:
        assert word in str(info.value)


def test_bad_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")


def test_production_config_builds_its_stages_without_loading_models(tmp_path):
    from pipeline.plan import build_stages

    cfg = load_config(REPO / "jobs" / "internvideo3_long.yaml")
    stages = build_stages(cfg, tmp_path)
    assert [s.name for s in stages] == ["media", "synthesize", "verify"]
    assert [s.name for s in stages[0].stages] == ["fetch", "segment", "select", "filter", "dedupe"]  # one process per video
    assert stages[0].resources.cpus == cfg.media.cpus_per_worker and stages[0].resources.batch_size == 1
    verify = stages[-1]
    assert verify.resources.gpus == 1 and cfg.verify.verifier.transformers.trust_remote_code
    assert "TEACHER_API_KEY" in verify.env_vars and "TEACHER_API_KEY" in stages[1].env_vars


def test_demo_config_skips_synthesis_with_one_clear_line(tmp_path):
    import logging

    from pipeline.plan import build_stages

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("curate")
    logger.addHandler(handler)
    try:
        stages = build_stages(load_config(REPO / "jobs" / "demo.yaml"), tmp_path)
    finally:
        logger.removeHandler(handler)
    assert [s.name for s in stages] == ["media"] and [s.name for s in stages[0].stages] == ["fetch", "segment", "select", "filter", "dedupe"]
    assert len(seen) == 1 and seen[0].startswith("synthesis skipped: no teacher configured (set synth.teacher")


def test_vllm_kind_builds_a_pass_plan_and_refuses_actors(tmp_path):
    from pipeline.plan import build_stages

    cfg = load_config(REPO / "jobs" / "internvideo3_long.yaml", ["synth.teacher.kind=vllm"])
    assert cfg.synth.execution_mode(cfg.verify.verifier) == "passes"
    assert [s.name for s in build_stages(cfg, tmp_path)] == ["media", "synthesize", "verify"]
    cfg = load_config(REPO / "jobs" / "internvideo3_long.yaml", ["synth.teacher.kind=vllm", "synth.execution=actors"])
    with pytest.raises(ValueError, match="synth.execution=actors: kind=vllm"):
        build_stages(cfg, tmp_path)


def test_an_rl_band_no_k_sample_rate_can_reach_fails_at_load():
    # k=3: the band 0.1-0.9 holds 1/3 and 2/3
    assert load_config(None, ["verify.samples=3"]).verify.policy.rl_min_pass_rate == 0.1
    with pytest.raises(ConfigError) as err:  # k=1: rates 0 and 1 only
        load_config(None, ["verify.samples=1"])
    msg = str(err.value)
    assert "rl_min_pass_rate" in msg and "rl_max_pass_rate" in msg and "verify.samples=1" in msg and "0/1, 1/1" in msg
    with pytest.raises(ConfigError, match="rl_min_pass_rate"):  # k=4: 0.3-0.45 holds none of 0.25, 0.5
        load_config(None, ["verify.samples=4", "verify.policy.rl_min_pass_rate=0.3",
                           "verify.policy.rl_max_pass_rate=0.45"])
