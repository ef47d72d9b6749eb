"""Tiny multimodal models built offline from configs (no hub access), shared by tests.

A Qwen-VL processor needs torchvision, which does not install on this CPU machine
(DESIGN.md), so the multimodal stand-in is LLaVA-style: CLIP vision tower + Llama text
model, a locally trained BPE tokenizer and the PIL CLIP image processor.
"""
from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
CORPUS = ["Frame at 12.0 s: a cat jumps on the table.", "Describe the video as JSON.",
          "What happens after the dog runs? The question and the answer.",
          "system user assistant 0 1 2 3 4 5 6 7 8 9 { } [ ] : , \""] * 10


def _train_bpe(special_tokens: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on the tiny corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>" if "<unk>" in special_tokens else None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def make_tokenizer():
    from transformers import PreTrainedTokenizerFast

    tok = _train_bpe(["<unk>", "<s>", "</s>", "<pad>", "<image>"], 320)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>")


def llava_config(tok):
    from transformers import CLIPVisionConfig, LlamaConfig

    image_id = tok.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, image_size=28, patch_size=14)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                       max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return dict(vision_config=vision, text_config=text, image_token_index=image_id,
                vision_feature_layer=-1, vision_feature_select_strategy="default")


def save_processor(out: Path, tok) -> None:
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    image_proc = CLIPImageProcessorPil(size={"shortest_edge": 28},
                                       crop_size={"height": 28, "width": 28})
    LlavaProcessor(image_processor=image_proc, tokenizer=tok, patch_size=14,
                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                   image_token="<image>", chat_template=CHAT_TEMPLATE).save_pretrained(out)


def build_tiny_llava(out: Path) -> Path:
    """A tiny LLaVA-style model (CLIP vision + Llama text) saved to `out`, built offline."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    tok = make_tokenizer()
    torch.manual_seed(0)
    LlavaForConditionalGeneration(LlavaConfig(**llava_config(tok))).save_pretrained(out)
    save_processor(out, tok)
    return out


CUSTOM_CONFIG = '''
from transformers import {base}Config


class {name}Config({base}Config):
    model_type = "{model_type}"
'''
CUSTOM_MODELING = '''
from transformers import {base}For{head}

from .configuration_{module} import {name}Config


class {name}For{head}({base}For{head}):
    """Stands in for the in-training M2LA checkpoint: its own code, loaded via auto_map."""

    config_class = {name}Config
'''


def _custom_code_checkpoint(out: Path, *, module: str, name: str, base: str, head: str, auto_class: str,
                            config_kwargs) -> Path:
    """Save a `base` model under a custom class whose code lives in the checkpoint (auto_map)."""
    import importlib.util
    import json
    import sys

    import torch
    import transformers

    fields = dict(module=module, name=name, base=base, head=head, model_type=module)
    (out / f"configuration_{module}.py").write_text(CUSTOM_CONFIG.format(**fields))
    (out / f"modeling_{module}.py").write_text(CUSTOM_MODELING.format(**fields))
    spec = importlib.util.spec_from_file_location(f"configuration_{module}", out / f"configuration_{module}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(1)
    model_cls = getattr(transformers, f"{base}For{head}")
    model_cls(getattr(mod, f"{name}Config")(**config_kwargs)).save_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    config["architectures"] = [f"{name}For{head}"]
    config["auto_map"] = {"AutoConfig": f"configuration_{module}.{name}Config",
                          auto_class: f"modeling_{module}.{name}For{head}"}
    (out / "config.json").write_text(json.dumps(config))
    sys.modules.pop(f"configuration_{module}", None)
    return out


def build_tiny_m2la(out: Path) -> Path:
    """A tiny multimodal checkpoint that ships its own modeling code (the verifier's loading path)."""
    tok = make_tokenizer()
    _custom_code_checkpoint(out, module="tiny_m2la_vl", name="TinyM2LAVL", base="Llava",
                            head="ConditionalGeneration", auto_class="AutoModelForImageTextToText",
                            config_kwargs=llava_config(tok))
    save_processor(out, tok)
    return out


def build_tiny_custom_text(out: Path) -> Path:
    """A tiny text-only checkpoint with its own modeling code."""
    tok = make_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    _custom_code_checkpoint(out, module="tiny_m2la", name="TinyM2LA", base="Llama", head="CausalLM",
                            auto_class="AutoModelForCausalLM",
                            config_kwargs=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id))
    tok.save_pretrained(out)
    return out


# --- Qwen3-VL (the production teacher / M2LA base family); its processor needs torchvision ----------
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>{% else %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_qwen_tokenizer():
    """A byte-level BPE tokenizer with Qwen-VL's special tokens, trained on the tiny corpus."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=_train_bpe(QWEN_SPECIAL, 360), eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", chat_template=QWEN_CHAT_TEMPLATE)


def qwen3_vl_config(tok) -> dict:
    """Qwen3-VL sub-configs at toy size: 2 layers, hidden 64, 16 px patches merged 2x2."""
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                  patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                  num_position_embeddings=64, deepstack_visual_indexes=[1])
    text = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                max_position_embeddings=2048, pad_token_id=tok.pad_token_id,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": [6, 5, 5], "mrope_interleaved": True})
    return dict(vision_config=vision, text_config=text, image_token_id=ids["<|image_pad|>"],
                video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                vision_end_token_id=ids["<|vision_end|>"], eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)


def save_qwen_processor(out: Path, tok, video_size: dict | None = None) -> None:
    """Qwen3-VL processor: 32 px per merged token, images at most 64x64 px (4 tokens); videos with the
    production pixel bounds for a whole clip (synth/backends/visual.py counts with them: a budget of one
    64x64 frame for a clip shrank every video's frames below what the counting expects); `video_size`
    overrides them."""
    from transformers import Qwen2VLImageProcessorFast, Qwen3VLProcessor, Qwen3VLVideoProcessor

    size = {"shortest_edge": 32 * 32, "longest_edge": 64 * 64}
    image = Qwen2VLImageProcessorFast(patch_size=16, merge_size=2, temporal_patch_size=2, size=size)
    video = Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2,
                                  size=video_size or {"shortest_edge": 4096, "longest_edge": 25165824})
    Qwen3VLProcessor(image_processor=image, tokenizer=tok, video_processor=video,
                     chat_template=QWEN_CHAT_TEMPLATE).save_pretrained(out)


def build_tiny_qwen3_vl(out: Path, *, custom_code: bool = False, video_size: dict | None = None) -> Path:
    """A tiny Qwen3-VL saved to `out`, built offline; with `custom_code` it ships its own
    modeling code (auto_map), as the M2LA conversion of a Qwen3-VL does."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tok = make_qwen_tokenizer()
    config = qwen3_vl_config(tok)
    if custom_code:
        _custom_code_checkpoint(out, module="tiny_m2la_qwen3vl", name="TinyM2LAQwen3VL", base="Qwen3VL",
                                head="ConditionalGeneration", auto_class="AutoModelForImageTextToText",
                                config_kwargs=config)
    else:
        torch.manual_seed(0)
        Qwen3VLForConditionalGeneration(Qwen3VLConfig(**config)).save_pretrained(out)
    save_qwen_processor(out, tok, video_size)
    return out
