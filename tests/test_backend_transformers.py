"""The transformers backend on tiny models built offline inside the test (no hub access).

A Qwen-VL processor needs torchvision, which does not install on this CPU machine
(DESIGN.md), so the multimodal stand-in is a tiny LLaVA-style model: CLIP vision tower +
Llama text model, a locally trained BPE tokenizer and the PIL CLIP image processor.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.records import Frame
from synth.backends import BackendConfig, ChatRequest, make_backend
from synth.backends.transformers_backend import TransformersBackend, subsample_frames

from tests.helpers import jpeg
from tests.tiny_models import build_tiny_custom_text, build_tiny_llava


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"))


def _backend(path: Path, **settings) -> TransformersBackend:
    cfg = BackendConfig(kind="transformers", model="tiny-llava",
                        transformers={"model_path": str(path), "device": "cpu", **settings})
    backend = make_backend(cfg)
    assert isinstance(backend, TransformersBackend)
    backend.setup()
    return backend


def test_frames_in_text_out(tiny_llava):
    backend = _backend(tiny_llava, batch_size=2)
    frames = [Frame(t, jpeg((40 * i, 80, 200 - 40 * i))) for i, t in enumerate((1.0, 5.5, 9.0))]
    reqs = [
        ChatRequest(key="a", system="You write QA.", prompt="Describe the video.",
                    frames=frames, max_tokens=6, temperature=0.0),
        ChatRequest(key="b", system=None, prompt="What happens?", frames=frames[:2],
                    max_tokens=6, temperature=0.0),
        ChatRequest(key="bad", system=None, prompt="?", frames=[Frame(0.0, b"not a jpeg")]),
        ChatRequest(key="c", system=None, prompt="Text only question.", max_tokens=6,
                    temperature=0.0),
    ]
    results = backend.generate(reqs)
    assert [r.key for r in results] == ["a", "b", "bad", "c"]
    a, b, bad, c = results
    for r in (a, b, c):
        assert r.ok and len(r.texts) == 1 and isinstance(r.texts[0], str) and r.texts[0]
        assert r.prompt_tokens > 0 and 0 < r.completion_tokens <= 6
    # 28 px / 14 px patches = 4 tokens per frame (CLS dropped by the "default" strategy).
    assert (a.visual_tokens, b.visual_tokens, c.visual_tokens) == (12, 8, 0)
    assert a.prompt_tokens > b.prompt_tokens > a.visual_tokens - 4
    assert not bad.ok and bad.error_reason == "bad_request"

    rendered = backend.render(reqs[0], frames)
    assert "Frame at 1.0 s:<image>Frame at 5.5 s:<image>Frame at 9.0 s:<image>" in rendered
    assert rendered.startswith("<s>system: You write QA.")
    # Greedy decoding is deterministic: same request alone gives the same text.
    assert backend.generate([reqs[0]])[0].texts == a.texts
    backend.close()


def test_max_frames_subsamples_and_n_sequences(tiny_llava):
    backend = _backend(tiny_llava, max_frames=2)
    frames = [Frame(float(t), jpeg((t * 20, 0, 0))) for t in range(5)]
    [r] = backend.generate([ChatRequest(key="k", system=None, prompt="Q", frames=frames,
                                        max_tokens=4, temperature=0.8, n=2)])
    assert r.ok and len(r.texts) == 2 and r.visual_tokens == 8
    assert [f.timestamp_s for f in subsample_frames(frames, 3)] == [0.0, 2.0, 4.0]


@pytest.fixture(scope="module")
def custom_code_ckpt(tmp_path_factory) -> Path:
    """A text-only checkpoint that ships its own modeling code (trust_remote_code only)."""
    return build_tiny_custom_text(tmp_path_factory.mktemp("tiny_m2la"))


def test_trust_remote_code_only_when_configured(custom_code_ckpt, tiny_llava):
    default = TransformersBackend(BackendConfig(kind="transformers", model=str(tiny_llava)))
    assert default.load_kwargs() == {"trust_remote_code": False}
    with pytest.raises(ValueError, match="contains custom code"):
        _backend(custom_code_ckpt)  # refuses to run the checkpoint's code
    backend = _backend(custom_code_ckpt, trust_remote_code=True)
    assert type(backend.model).__name__ == "TinyM2LAForCausalLM"
    [r] = backend.generate([ChatRequest(key="v", system="Verify.", prompt="Is it true?",
                                        max_tokens=5, temperature=0.0)])
    assert r.ok and r.texts[0] and r.prompt_tokens > 0 and r.visual_tokens == 0
    [f] = backend.generate([ChatRequest(key="f", system=None, prompt="?",
                                        frames=[Frame(0.0, jpeg((0, 0, 0)))])])
    assert not f.ok and f.error_reason == "bad_request"  # text-only model given frames


def test_custom_code_multimodal_checkpoint_loads_only_with_trust_remote_code(tmp_path):
    from tests.tiny_models import build_tiny_m2la

    ckpt = build_tiny_m2la(tmp_path)
    with pytest.raises(ValueError, match="custom code"):
        _backend(ckpt)
    backend = _backend(ckpt, trust_remote_code=True)
    assert type(backend.model).__name__ == "TinyM2LAVLForConditionalGeneration"
    [r] = backend.generate([ChatRequest(key="m", system=None, prompt="What happens?",
                                        frames=[Frame(0.5, jpeg((9, 99, 199)))], max_tokens=4,
                                        temperature=0.0)])
    assert r.ok and r.visual_tokens == 4


def test_one_video_prefix_answers_every_question_as_the_plain_path_does(tiny_llava, caplog):
    """A video's questions share its frames: prefilled once, answered from copies of that cache;
    under greedy decoding every answer equals the one each request gets on its own."""
    frames = [Frame(float(t), jpeg((30 * t, 90, 220 - 30 * t)), 28, 28, digest=f"f{t}") for t in range(4)]
    questions = ["What colour is the first frame?", "How many frames are there?", "Does anything move?",
                 "Name one object."]
    reqs = [ChatRequest(key=f"q{i}", system=None, prompt=q, frames=frames, max_tokens=8, temperature=0.0)
            for i, q in enumerate(questions)]
    plain = _backend(tiny_llava, share_prefix=False, batch_size=1).generate(reqs)
    shared_backend = _backend(tiny_llava, share_prefix=True)
    shared = shared_backend.generate(reqs)
    assert [r.texts for r in shared] == [r.texts for r in plain] and all(r.ok for r in shared)
    assert shared_backend._sharing is True  # the first-use check passed
    # the frames were prefilled once: every later question had its prefix (frames included) cached
    assert shared[0].cached_tokens == 0 and all(r.cached_tokens >= r.visual_tokens > 0 for r in shared[1:])
    assert [r.visual_tokens for r in shared] == [r.visual_tokens for r in plain] == [16] * 4
    # k samples each, from the same cache (sampling: only the shapes can be compared)
    sampled = shared_backend.generate([ChatRequest(key=f"s{i}", system=None, prompt=q, frames=frames, n=3,
                                                   max_tokens=4, temperature=0.7) for i, q in enumerate(questions)])
    assert all(r.ok and len(r.texts) == 3 for r in sampled)


def test_a_model_whose_cache_does_not_reproduce_falls_back_and_says_so(tiny_llava, caplog, monkeypatch):
    backend = _backend(tiny_llava, share_prefix=True)
    frames = [Frame(float(t), jpeg((30 * t, 90, 10)), 28, 28, digest=f"g{t}") for t in range(2)]
    reqs = [ChatRequest(key=f"q{i}", system=None, prompt=f"question {i}", frames=frames, max_tokens=6,
                        temperature=0.0) for i in range(3)]
    monkeypatch.setattr(backend, "_continue", lambda *a, **k: (_ for _ in ()).throw(TypeError("no cache=")))
    with caplog.at_level("WARNING"):
        results = backend.generate(reqs)
    assert all(r.ok and r.cached_tokens == 0 for r in results) and backend._sharing is False
    assert "every request prefills its own frames" in caplog.text
