"""The production model family (Qwen3-VL teacher, M2LA-style custom-code Qwen3-VL verifier)
on the transformers backend, with models built offline from configs.

A Qwen-VL processor needs torchvision, which has no CPU wheel for the pinned CPU torch
(DESIGN.md), so this module runs where torchvision is installed: in CI the engine venv
(`.ci/engine`, on the CPU in float32), and GPU nodes, where it uses CUDA in bf16 with SDPA
attention, as `jobs/internvideo3_long.yaml` configures the verifier. The main suite skips it;
its LLaVA-style tests cover the same code paths there.
"""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torchvision", reason="a Qwen-VL processor needs torchvision (no CPU wheel for "
                    "torch 2.13.0 here); run on a GPU node: python -m pytest tests/test_qwen_vl.py")

import torch  # noqa: E402

from pipeline.records import Frame, Scene, VideoTask  # noqa: E402
from pipeline.schema import validate_row  # noqa: E402
from pipeline.stage import apply_stage  # noqa: E402
from synth.backends import BackendConfig, ChatRequest, make_backend  # noqa: E402
from synth.config import SynthConfig, VerifyConfig, VerifyPolicy  # noqa: E402
from synth.publish import publish_rows  # noqa: E402
from synth.synthesize import SynthesizeStage  # noqa: E402
from synth.backends.visual import visual_tokens  # noqa: E402
from synth.verify import VerifyStage  # noqa: E402
from tests.helpers import PROV, jpeg, qa_task  # noqa: E402
from tests.tiny_models import build_tiny_qwen3_vl  # noqa: E402

CUDA = torch.cuda.is_available()
# What the production config runs on a GPU node; plain float32 on a CPU.
RUNTIME = {"device": "cuda", "dtype": "bfloat16", "attn_implementation": "sdpa"} if CUDA else {"device": "cpu"}
TOKENS_PER_FRAME = 4  # a 64x48 frame is resized to 64x64: 4x4 patches of 16 px, merged 2x2


@pytest.fixture(scope="module")
def qwen3_vl(tmp_path_factory) -> Path:
    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny_qwen3_vl"))


@pytest.fixture(scope="module")
def m2la_qwen3_vl(tmp_path_factory) -> Path:
    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny_m2la_qwen3_vl"), custom_code=True)


def _backend(path: Path, video_input: str = "images", **settings):
    backend = make_backend(BackendConfig(kind="transformers", model="tiny-qwen3-vl", video_input=video_input,
                                         transformers={"model_path": str(path), **settings}))
    backend.setup()
    return backend


def _requests() -> list[ChatRequest]:
    frames = [Frame(t, jpeg((40 * i, 80, 200 - 40 * i))) for i, t in enumerate((1.0, 5.5, 9.0))]
    return [ChatRequest(key="a", system="You write QA.", prompt="Describe the video.", frames=frames,
                        max_tokens=6, temperature=0.0),
            ChatRequest(key="b", system=None, prompt="What happens?", frames=frames[:1], max_tokens=6,
                        temperature=0.0),
            ChatRequest(key="c", system=None, prompt="Text only question.", max_tokens=6, temperature=0.0)]


def test_teacher_frames_in_text_out(qwen3_vl):
    backend = _backend(qwen3_vl, batch_size=3, **RUNTIME)
    assert backend.device == RUNTIME["device"]
    assert type(backend.processor).__name__ == "Qwen3VLProcessor"
    if CUDA:
        assert backend.model.dtype == torch.bfloat16
        assert backend.model.config._attn_implementation == "sdpa"
    reqs = _requests()
    a, b, c = backend.generate(reqs)
    assert [r.key for r in (a, b, c)] == ["a", "b", "c"]
    for r in (a, b, c):
        assert r.ok and len(r.texts) == 1 and r.texts[0], r
        assert 0 < r.completion_tokens <= 6
    assert (a.visual_tokens, b.visual_tokens, c.visual_tokens) == (3 * TOKENS_PER_FRAME, TOKENS_PER_FRAME, 0)
    assert a.prompt_tokens > b.prompt_tokens > c.prompt_tokens
    rendered = backend.render(reqs[0], reqs[0].frames)
    assert ("Frame at 1.0 s:<|vision_start|><|image_pad|><|vision_end|>"
            "Frame at 5.5 s:<|vision_start|><|image_pad|><|vision_end|>") in rendered
    assert rendered.startswith("<|im_start|>system\nYou write QA.<|im_end|>")
    backend.close()


def test_batched_generation_equals_one_by_one(qwen3_vl):
    """Left padding with multimodal rope positions: a request answers the same in a batch as alone."""
    backend = _backend(qwen3_vl, batch_size=3, device=RUNTIME["device"], dtype="float32")
    reqs = _requests()
    batched = backend.generate(reqs)
    alone = [backend.generate([r])[0] for r in reqs]
    assert [r.texts for r in batched] == [r.texts for r in alone]
    assert [r.prompt_tokens for r in batched] == [r.prompt_tokens for r in alone]


def test_m2la_style_verifier_loads_only_with_trust_remote_code(m2la_qwen3_vl):
    with pytest.raises(ValueError, match="custom code"):
        _backend(m2la_qwen3_vl, **RUNTIME)
    backend = _backend(m2la_qwen3_vl, trust_remote_code=True, **RUNTIME)
    assert type(backend.model).__name__ == "TinyM2LAQwen3VLForConditionalGeneration"
    [r] = backend.generate([_requests()[1]])
    assert r.ok and r.visual_tokens == TOKENS_PER_FRAME


def test_verify_stage_with_m2la_style_verifier(m2la_qwen3_vl):
    """The production verifier path: k answers from frames plus a blind pass, decisions, valid rows."""
    verifier = BackendConfig.model_validate({"kind": "transformers", "model": "tiny-m2la-qwen3-vl", "transformers": {
        "model_path": str(m2la_qwen3_vl), "trust_remote_code": True, "max_frames": 3, **RUNTIME}})
    [task] = apply_stage(VerifyStage(VerifyConfig(verifier=verifier, samples=2, max_tokens=8, judge="token_f1")),
                         [qa_task()])
    assert not task.rejected
    items = task.synthesis.items
    for item in items:
        v = item.verification
        assert v.verifier == "tiny-m2la-qwen3-vl" and v.k == 2 and len(v.answers) == 2
        assert v.decision in ("keep", "hard", "reject")
    # one request of k samples per item, each showing 3 frames as one video (the blind pass sends none):
    # 2 two-frame patches of 4 tokens, as the project counts them
    assert visual_tokens([(56, 56)] * 3, "qwen3_vl", as_video=True) == 2 * TOKENS_PER_FRAME
    assert task.verify_cost.visual_tokens == len(items) * 2 * TOKENS_PER_FRAME
    for config, rows in publish_rows(task, VerifyPolicy()).items():
        for row in rows:
            assert validate_row(config, {**row, **PROV}) is None


def test_synthesize_stage_with_qwen3_vl_teacher(qwen3_vl):
    """Window captions from frames with timestamps, description, QA writing: counted and kept or rejected."""
    task = VideoTask("qwen3vlteach", "qwen3vlteach", "youtube", 0, video_path="/media/q.mp4", width=64, height=48,
                     fps=10.0, frame_count=120, duration_s=12.0).accept()
    task.scenes = [Scene(0, 0.0, 4.0, 0, 40, 2.0, "start"), Scene(1, 4.0, 12.0, 40, 120, 8.0, "cut")]
    task.frames = [Frame(float(t), jpeg((20 * t, 100, 50)), 64, 48) for t in range(12)]
    cfg = SynthConfig.model_validate({
        "teacher": {"kind": "transformers", "model": "tiny-qwen3-vl",
                    "transformers": {"model_path": str(qwen3_vl), "max_frames": 4, **RUNTIME}},
        "caption": {"max_tokens": 16, "describe_max_tokens": 32, "max_frames_per_window": 2},
        "qa": {"max_tokens": 64, "items_per_video": 3, "composed_grounding": 0, "composed_order": 0}})
    [task] = apply_stage(SynthesizeStage(cfg), [task])
    cost = task.cost
    assert cost.requests == 2 + 1 + 1  # 2 windows, 1 description, 1 QA writing (no composed items asked)
    # 2 windows, each its 2 frames as one video: one two-frame patch of 4 tokens
    assert cost.visual_tokens == 2 * visual_tokens([(64, 48)] * 2, "qwen3_vl", as_video=True) == 2 * TOKENS_PER_FRAME
    assert cost.output_tokens > 0
    # a random model writes no JSON where JSON is asked: the video is left for the next run, not committed
    assert cost.failed_requests == 1 and task.reject_reason == "model_error"
    assert "write_qa: malformed_response" in task.reject_message


def test_frames_as_one_video_cost_half_the_visual_tokens(qwen3_vl):
    """Qwen3-VL given the frames as a video: two frames per temporal patch, the frames' times rendered."""
    frames = [Frame(float(t), jpeg((30 * t, 80, 100)), 64, 48, digest=f"v{t}") for t in range(4)]
    req = ChatRequest(key="v", system=None, prompt="What happens?", frames=frames, max_tokens=6, temperature=0.0)
    as_images = _backend(qwen3_vl, share_prefix=False, **RUNTIME).generate([req])[0]
    video = _backend(qwen3_vl, video_input="video", share_prefix=False, **RUNTIME)
    assert video.as_video
    as_video = video.generate([req])[0]
    assert as_images.ok and as_video.ok
    assert as_images.visual_tokens == 4 * TOKENS_PER_FRAME and as_video.visual_tokens == 2 * TOKENS_PER_FRAME
    assert "Video frames sampled at 0.0, 1.0, 2.0, 3.0 s:" in video.render(req, frames, as_video=True)


@pytest.mark.parametrize("video_input", ["images", "video"])
def test_shared_prefix_equals_plain_generation_on_qwen3_vl(qwen3_vl, m2la_qwen3_vl, video_input):
    """The verifier's questions of one video from one prefill: greedy answers equal the plain path's,
    for the Qwen3-VL backbone and the M2LA-style custom-code checkpoint (or it falls back)."""
    frames = [Frame(float(t), jpeg((30 * t, 80, 100)), 64, 48, digest=f"p{t}") for t in range(4)]
    reqs = [ChatRequest(key=f"q{i}", system=None, prompt=q, frames=frames, max_tokens=8, temperature=0.0)
            for i, q in enumerate(["What colour?", "How many?", "Does it move?"])]
    for path, extra in ((qwen3_vl, {}), (m2la_qwen3_vl, {"trust_remote_code": True})):
        plain = _backend(path, video_input, share_prefix=False, batch_size=1, **extra, **RUNTIME).generate(reqs)
        shared_backend = _backend(path, video_input, share_prefix=True, **extra, **RUNTIME)
        shared = shared_backend.generate(reqs)
        assert [r.texts for r in shared] == [r.texts for r in plain]
        assert shared_backend._sharing  # answered from the shared prefix, not the fallback
        assert all(r.cached_tokens > 0 for r in shared[1:])
