"""Tiny models for the real vLLM engine, built offline (random weights, the tests' tokenizers).

vLLM's CPU attention takes head sizes of 32 and up, so these are the shared tiny models
(tests/tiny_models.py) at head size 32. The Qwen3-VL one keeps the production video pixel
bounds (synth/backends/visual.py counts with them), so the server's visual-token count and
the project's own count of the same frames can be compared.
"""
from __future__ import annotations

from pathlib import Path

from tests import tiny_models as tm


def build_text(out: Path) -> Path:
    """A 2-layer Llama (hidden 64) with the tests' BPE tokenizer and chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tm.make_tokenizer()
    tok.chat_template = tm.CHAT_TEMPLATE
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_llava(out: Path) -> Path:
    """A LLaVA-style model (CLIP vision + Llama text) whose text model has head size 32."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    tok = tm.make_tokenizer()
    config = tm.llava_config(tok)
    config["vision_config"] = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                               num_attention_heads=2, image_size=28, patch_size=14)
    config["text_config"] = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                        max_position_embeddings=4096, bos_token_id=tok.bos_token_id,
                                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlavaForConditionalGeneration(LlavaConfig(**config)).save_pretrained(out)
    _hub_vision_keys(out / "model.safetensors")
    tm.save_processor(out, tok)
    return out


def _hub_vision_keys(path: Path) -> None:
    """Name the CLIP tower's weights as published LLaVA checkpoints do (`vision_tower.vision_model.*`):
    transformers 5.19 saves them as `vision_tower.*`, which vLLM's LLaVA loader does not find."""
    from safetensors.torch import load_file, save_file

    weights = load_file(path)
    fixed = {("vision_tower.vision_model." + k[len("vision_tower."):]
              if k.startswith("vision_tower.") and not k.startswith("vision_tower.vision_model.") else k): v
             for k, v in weights.items()}
    save_file(fixed, path, metadata={"format": "pt"})


def build_qwen3_vl(out: Path) -> Path:
    """The tests' tiny Qwen3-VL (its video processor has the production pixel bounds for a whole clip)."""
    tm.build_tiny_qwen3_vl(out)
    return out
