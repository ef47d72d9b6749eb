"""Token budgets the trainers' way (pipeline/budget.py).

The SFT trainer (InternVideo3's xtuner fork) is not on the package index, so its numbers are
reproduced here: by its own frame sampler and resize, a 15.8-min video at its long config
(fps 4, up to 2048 frames) is 306,176 video tokens at 640x360, 319,488 at 1280x720 and 101,376
at 320x240 (measured with the fork's code, issue 21).
"""
from __future__ import annotations

import pytest

from pipeline.budget import (ByteBound, HFTextCounter, QwenVideoSettings, VideoFacts, XtunerSettings, count_qwen,
                             count_xtuner, fit_qwen, fit_xtuner, xtuner_frame_indices, xtuner_frame_span,
                             xtuner_video)

MEAN_S = 15.8 * 60  # the recipe's mean video length


def _messages(w: int, h: int, seconds: float, fps: float = 30.0, answer: str = "B. a dog") -> list[dict]:
    video = {"url": "v.mp4", "image_wh": [w, h], "origin_video_length": int(seconds * fps), "origin_fps": fps}
    return [{"role": "user", "content": [{"type": "video_url", "video_url": video},
                                         {"type": "text", "text": "<VIDEO_CONTEXT>\nWhat runs?\nA. a cat\nB. a dog"}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]}]


@pytest.mark.parametrize("wh,tokens", [((640, 360), 306_176), ((1280, 720), 319_488), ((320, 240), 101_376)])
def test_the_forks_own_numbers_for_a_recipe_length_video(wh, tokens):
    indices, h, w, video_tokens = xtuner_video(VideoFacts(*wh, int(MEAN_S * 30), 30.0), XtunerSettings())
    assert len(indices) == 2048 and video_tokens == tokens
    assert (h % 28, w % 28) == (0, 0)


def test_frame_sampler_follows_fps_and_limits():
    # 20 s at 25 fps -> 80 frames at fps 4; 1 s -> the minimum of 4; an odd count is padded to pairs
    assert len(xtuner_frame_indices(500, 25.0, 4, 4, 2048)) == 80
    assert len(xtuner_frame_indices(25, 25.0, 4, 4, 2048)) == 4
    odd = xtuner_frame_indices(125, 25.0, 4.2, 4, 2048)  # int(21) frames -> 22, the last repeated
    assert len(odd) == 22 and odd[-1] == odd[-2] == 124


def test_the_frame_span_is_the_sampled_lists_length_and_ends():
    """`curate check` counts every sample by the span alone; it must be what the list gives, and the list
    what the fork's `np.linspace(...).round()` gives (round half to even at .5 steps)."""
    import numpy as np

    for total in (0, 1, 2, 3, 7, 25, 124, 125, 1001, 28_440):
        for fps, target, lo, hi in ((25.0, 4, 4, 2048), (29.97, 4.2, 1, 2048), (30.0, 0.01, 1, 24), (12.5, 2, 8, 9)):
            indices = xtuner_frame_indices(total, fps, target, lo, hi)
            n = max(min(max(int(total / fps * target), lo), hi, total), lo)
            fork = [int(round(x)) for x in np.linspace(0, total - 1, n).round().tolist()]
            assert indices == fork + fork[-1:] * (n % 2)
            assert xtuner_frame_span(total, fps, target, lo, hi) == (len(indices), indices[0], indices[-1])


def test_a_sample_over_the_cap_is_counted_with_its_text_and_the_fit_brings_it_under():
    long = _messages(1280, 720, MEAN_S)
    c = count_xtuner(long, XtunerSettings())
    assert c.video_tokens == 319_488 and c.total_tokens > c.video_tokens + 1024 * 2  # stamps, vision start/end
    assert c.over(262_144)
    settings, counts = fit_xtuner([long, _messages(320, 240, 30.0)], XtunerSettings(), 262_144)
    assert settings.video_max_total_pixels < XtunerSettings().video_max_total_pixels
    assert all(not k.over(262_144) for k in counts)
    assert counts[0].frames == 2048  # the whole video stays sampled at the same rate; frames get smaller
    assert counts[0].total_tokens > 0.9 * 262_144  # and as much of the budget as fits is used
    # the short clip is not touched by the lower pixel limit
    assert counts[1] == count_xtuner(_messages(320, 240, 30.0), XtunerSettings())


def test_the_byte_bound_never_counts_fewer_than_a_real_tokenizer():
    from tests.tiny_models import make_qwen_tokenizer

    tok = HFTextCounter(make_qwen_tokenizer())
    for m in (_messages(640, 360, 120.0), _messages(640, 360, 5.0, answer="The event happens in 1.0 - 2.5 seconds.")):
        exact, bound = count_xtuner(m, XtunerSettings(), tok), count_xtuner(m, XtunerSettings(), ByteBound())
        assert exact.video_tokens == bound.video_tokens
        assert exact.video_tokens < exact.total_tokens <= bound.total_tokens


def test_qwen_budget_fits_the_cap_per_video():
    facts = VideoFacts(1920, 1080, int(3600 * 30), 30.0)
    c = count_qwen(facts, QwenVideoSettings(fps=2, max_frames=768), "question")
    assert c.frames == 768 and c.over(16384)
    s, fitted = fit_qwen(facts, QwenVideoSettings(fps=2, max_frames=768), 16384, "question")
    assert not fitted.over(16384) and fitted.frames == 768 and fitted.total_tokens > 0.8 * 16384
    assert s.entry()["max_pixels"] < 768 * 28 * 28
