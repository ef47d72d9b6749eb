"""The transformers path shows Qwen3-VL the same real frame times (this venv has torchvision, so the
Qwen-VL video processor runs; the prompt it builds is read back with the model's own tokenizer)."""
from __future__ import annotations

import re

from synth.backends import BackendConfig, ChatRequest
from synth.backends.transformers_backend import TransformersBackend, decode_frames
from synth.backends.visual import visual_tokens
from tests.engine.conftest import report
from tests.engine.test_openai_engine import _expected_times, _frames


def test_qwen3_vl_on_transformers_is_given_the_frames_real_times(model_dirs):
    frames = _frames([12.0, 19.5, 31.0, 44.25, 50.0, 61.5], size=(128, 128))
    backend = TransformersBackend(BackendConfig(kind="transformers", model="tiny-qwen3-vl",
                                                transformers={"model_path": str(model_dirs["tiny-qwen3-vl"]),
                                                              "device": "cpu"}))
    backend.setup()
    assert backend.as_video  # the Qwen-VL video processor loads (torchvision imports here)
    req = ChatRequest(key="v/caption", system=None, prompt="Describe.", frames=frames, max_tokens=4,
                      temperature=0.0)
    media = backend._media(frames, decode_frames(frames))
    enc = backend._encode(backend.render(req, frames, as_video=True), media)
    prompt = backend.tokenizer.decode(enc["input_ids"][0])
    rendered = re.findall(r"<(\d+\.\d) seconds>", prompt)
    assert rendered == _expected_times(frames) == ["15.8", "37.6", "55.8"]
    pads = int(backend._is_visual(enc["input_ids"][0]).sum())
    assert pads == visual_tokens([(128, 128)] * 6, "qwen3_vl", as_video=True)
    [res] = backend.generate([req])
    assert res.ok and res.visual_tokens == pads
    report("frames + times (Qwen3-VL, transformers)", frames_sent=6, times_rendered=", ".join(rendered) + " s",
           visual_tokens_project=visual_tokens([(128, 128)] * 6, "qwen3_vl", as_video=True),
           video_pad_tokens_in_prompt=pads)
