"""verl 0.9.1 on `curate export verl`: its RLHFDataset with a Qwen2.5-VL processor (built offline,
the processor's default video sizes) and its custom-reward loading with `synth.reward`."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.budget import QwenVideoSettings, VideoFacts, qwen_video
from pipeline.export import export_verl
from pipeline.store import DatasetStore
from tests.long_fixtures import long_dataset

MAX_PROMPT = 4096
# Qwen2.5-VL's chat template, video and default system turn included (what the processor renders)
QWEN25_TEMPLATE = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def processor():
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from tests.tiny_models import make_qwen_tokenizer

    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=make_qwen_tokenizer(),
                               video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN25_TEMPLATE)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = long_dataset(tmp_path_factory.mktemp("media"), str(tmp_path_factory.mktemp("ds") / "ds"),
                       {"short360": (40, 640, 360, 10.0), "long720": (300, 1280, 720, 5.0),
                        "tall": (90, 360, 640, 5.0)})
    dest = tmp_path_factory.mktemp("verl")
    export_verl(out, dest, max_prompt_length=MAX_PROMPT, fps=2.0, max_frames=32)
    return out, dest / "train.parquet"


def _dataset(path, processor, tmp_path):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    config = OmegaConf.create({"max_prompt_length": MAX_PROMPT, "filter_overlong_prompts": True,
                               "filter_overlong_prompts_workers": 1, "cache_dir": str(tmp_path / "cache"),
                               "image_patch_size": 14})
    return RLHFDataset(data_files=[str(path)], tokenizer=processor.tokenizer, config=config, processor=processor)


def test_rlhf_dataset_keeps_every_row_and_counts_the_video_as_we_do(exported, processor, tmp_path):
    from verl.utils.tokenizer import build_multimodal_processor_inputs

    out, path = exported
    rows = pq.read_table(path).to_pylist()
    ds = _dataset(path, processor, tmp_path)
    assert len(ds) == len(rows) == 6  # none filtered as over max_prompt_length
    pad = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    facts = {r["video_id"]: r for r in DatasetStore(out).read_table("videos").to_pylist()}
    for row in rows:
        messages = ds._build_messages(dict(row), key="prompt")
        raw = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        images, videos, audios = ds._process_multi_modal_info(messages, 14, ds.config)
        ids = list(build_multimodal_processor_inputs(processor, text=[raw], images=images, videos=videos,
                                                     audio=audios)["input_ids"][0])
        assert len(ids) <= MAX_PROMPT
        v, entry = facts[row["video_id"]], row["videos"][0]
        settings = QwenVideoSettings(**{k: entry[k] for k in ("fps", "min_frames", "max_frames", "min_pixels",
                                                              "max_pixels", "total_pixels")})
        frames, h, w, tokens = qwen_video(VideoFacts(v["width"], v["height"], v["frame_count"], v["fps"]), settings)
        assert ids.count(pad) == tokens, (row["video_id"], frames, h, w)


def test_without_limits_verl_drops_the_rows(exported, processor, tmp_path):
    """The same rows of the shortest video (40 s of 640x360; the long ones would take minutes to decode at
    qwen-vl-utils' defaults) with bare `{"video": path}` entries: 80 frames of 644x364 overflow the prompt."""
    _, path = exported
    table = pq.read_table(path)
    keep = [i for i, v in enumerate(table.column("video_id").to_pylist()) if v.startswith("short360")]
    table = table.take(keep)
    bare = pa.array([[{"video": v[0]["video"]}] for v in table.column("videos").to_pylist()])
    naive = tmp_path / "naive.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("videos"), "videos", bare), naive)
    assert table.num_rows == 2 and len(_dataset(naive, processor, tmp_path)) == 0


def test_verl_loads_the_shipped_reward_and_scores_the_rows(exported):
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = OmegaConf.create({"reward": {"custom_reward_function": {"path": "pkg://synth.reward",
                                                                     "name": "compute_score", "reward_kwargs": {}}}})
    fn = get_custom_reward_fn(config)
    _, path = exported
    for row in pq.read_table(path).to_pylist():
        truth, info = row["reward_model"]["ground_truth"], row["extra_info"]
        if info["reward_kind"] == "temporal_iou":
            s, e = json.loads(truth)
            right = f"The event happens in {s:.1f} - {e:.1f} seconds."
            half = f"The event happens in {s:.1f} - {s + (e - s) / 2:.1f} seconds."
            assert fn(data_source=row["data_source"], solution_str=right, ground_truth=truth,
                      extra_info=info)["score"] == 1.0
            assert fn(data_source=row["data_source"], solution_str=half, ground_truth=truth,
                      extra_info=info)["score"] == pytest.approx(0.5, abs=0.01)
        else:
            wrong = "A" if truth != "A" else "B"
            assert fn(data_source=row["data_source"], solution_str=f"{truth}.", ground_truth=truth,
                      extra_info=info)["score"] == 1.0
            assert fn(data_source=row["data_source"], solution_str=wrong, ground_truth=truth,
                      extra_info=info)["score"] == 0.0
