"""In-process Hugging Face model backend (GPU or CPU), meant to live inside a Ray actor.

Loads AutoProcessor + AutoModelForImageTextToText from a local directory (falling back to
AutoModelForCausalLM for text-only teachers); `trust_remote_code` is passed only when the
config asks for it (the M2LA verifier ships its own modeling code). Frames are decoded
from bytes with PIL, shown to the model with their timestamps, and each result carries
prompt / completion / visual token counts.
"""
from __future__ import annotations

import io
import logging
import time
from itertools import groupby
from typing import Any, Sequence

from synth.backends.config import BackendConfig
from synth.backends.messages import request_to_hf_messages, request_to_plain_prompt
from synth.backends.parsing import parse_json_reply
from synth.backends.types import ChatRequest, ChatResult, ErrorReason

log = logging.getLogger(__name__)


def subsample_frames(frames: list[Any], max_frames: int) -> list[Any]:
    """At most `max_frames` frames, spread uniformly, first and last kept, order kept."""
    if len(frames) <= max_frames:
        return list(frames)
    if max_frames == 1:
        return [frames[0]]
    step = (len(frames) - 1) / (max_frames - 1)
    return [frames[round(i * step)] for i in range(max_frames)]


def decode_frames(frames: Sequence[Any]) -> list[Any]:
    """PIL RGB images from encoded frame bytes (raises on undecodable bytes)."""
    from PIL import Image

    images = []
    for fr in frames:
        with Image.open(io.BytesIO(bytes(fr.image))) as im:
            images.append(im.convert("RGB"))
    return images


class TransformersBackend:
    """A local checkpoint answering `ChatRequest`s in batches of `batch_size`."""

    def __init__(self, cfg: BackendConfig) -> None:
        if cfg.kind != "transformers":
            raise ValueError(f"TransformersBackend needs kind='transformers', got {cfg.kind!r}")
        self.cfg = cfg
        self.tcfg = cfg.transformers
        self.path = self.tcfg.model_path or cfg.model
        self.name = cfg.model
        self.model: Any = None
        self.processor: Any = None
        self.device: str = "cpu"

    # --- loading ---------------------------------------------------------------------
    def load_kwargs(self) -> dict[str, Any]:
        """kwargs for from_pretrained. trust_remote_code is always explicit: True only when
        configured, and an explicit False makes transformers refuse custom code at once
        instead of prompting on a terminal."""
        return {"trust_remote_code": bool(self.tcfg.trust_remote_code)}

    def model_kwargs(self) -> dict[str, Any]:
        import torch

        kw = self.load_kwargs()
        kw["dtype"] = "auto" if self.tcfg.dtype == "auto" else getattr(torch, self.tcfg.dtype)
        if self.tcfg.attn_implementation:
            kw["attn_implementation"] = self.tcfg.attn_implementation
        return kw

    def setup(self) -> None:
        """Load processor and model once (inside the actor, not in the driver)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

        dev = self.tcfg.device
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if dev == "auto" else dev
        self.processor = AutoProcessor.from_pretrained(self.path, **self.load_kwargs())
        try:
            model = AutoModelForImageTextToText.from_pretrained(self.path, **self.model_kwargs())
        except ValueError as e:  # config not registered as image-text-to-text: text-only LM
            log.info("%s is not an image-text-to-text model (%s); loading as causal LM",
                     self.path, e)
            model = AutoModelForCausalLM.from_pretrained(self.path, **self.model_kwargs())
        self.model = model.to(self.device).eval()
        tok = self.tokenizer
        tok.padding_side = "left"  # decoder-only batched generation
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token

    def close(self) -> None:
        self.model = None
        self.processor = None

    # --- helpers -----------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def is_multimodal(self) -> bool:
        return hasattr(self.processor, "image_processor")

    def image_token_id(self) -> int | None:
        """The id of the image placeholder token (None for a text-only model)."""
        tid = getattr(self.processor, "image_token_id", None)
        if tid is None and getattr(self.processor, "image_token", None):
            tid = self.tokenizer.convert_tokens_to_ids(self.processor.image_token)
        if tid is None:
            tid = getattr(self.model.config, "image_token_id",
                          getattr(self.model.config, "image_token_index", None))
        return tid

    def render(self, req: ChatRequest, frames: list[Any]) -> str:
        """The prompt text: chat template when there is one, a plain prompt otherwise."""
        template_owner = self.processor if getattr(self.processor, "chat_template", None) \
            else self.tokenizer
        if getattr(template_owner, "chat_template", None):
            if self.is_multimodal:
                messages = request_to_hf_messages(req, frames)
            else:
                messages = [m for m in ([{"role": "system", "content": req.system}]
                                        if req.system else [])]
                messages.append({"role": "user", "content": req.prompt})
            return template_owner.apply_chat_template(messages, add_generation_prompt=True,
                                                      tokenize=False)
        return request_to_plain_prompt(req, getattr(self.processor, "image_token", None), frames)

    # --- generation --------------------------------------------------------------------
    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """Answer all requests in order; a failing request or batch becomes a failed result."""
        if self.model is None:
            self.setup()
        results: dict[int, ChatResult] = {}
        prepared: list[tuple[int, ChatRequest, str, list[Any]]] = []
        for i, req in enumerate(requests):
            frames = subsample_frames(list(req.frames), self.tcfg.max_frames)
            if frames and not self.is_multimodal:
                results[i] = ChatResult.failure(req.key, ErrorReason.bad_request,
                                                f"{self.path} is text-only but got frames")
                continue
            try:
                images = decode_frames(frames)
            except Exception as e:  # PIL raises several types for corrupt bytes
                results[i] = ChatResult.failure(req.key, ErrorReason.bad_request,
                                                f"undecodable frame: {type(e).__name__}: {e}")
                continue
            prepared.append((i, req, self.render(req, frames), images))

        def sampling(item: tuple[int, ChatRequest, str, list[Any]]) -> tuple[int, float, int]:
            r = item[1]
            return (r.max_tokens, r.temperature, r.n)

        for _, group in groupby(prepared, key=sampling):
            items = list(group)
            for start in range(0, len(items), self.tcfg.batch_size):
                batch = items[start:start + self.tcfg.batch_size]
                for i, res in self._generate_batch(batch):
                    results[i] = res
        return [results[i] for i in range(len(requests))]

    def _generate_batch(self, batch: list[tuple[int, ChatRequest, str, list[Any]]]
                        ) -> list[tuple[int, ChatResult]]:
        import torch

        t0 = time.monotonic()
        req0 = batch[0][1]
        try:
            texts = [b[2] for b in batch]
            images = [im for b in batch for im in b[3]]
            kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
            if images:
                kwargs["images"] = images
            inputs = self.processor(**kwargs) if self.is_multimodal else \
                self.tokenizer(texts, return_tensors="pt", padding=True)
            inputs = inputs.to(self.device)
            if "pixel_values" in inputs and self.model.dtype != torch.float32:
                inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
            gen: dict[str, Any] = {"max_new_tokens": req0.max_tokens,
                                   "num_return_sequences": req0.n,
                                   "pad_token_id": self.tokenizer.pad_token_id}
            if req0.temperature > 0:
                gen.update(do_sample=True, temperature=req0.temperature)
            else:
                gen.update(do_sample=False)
            with torch.inference_mode():
                out = self.model.generate(**inputs, **gen)
        except Exception as e:  # OOM, shape errors: the whole batch fails as data
            log.exception("generate failed for %d requests", len(batch))
            return [(b[0], ChatResult.failure(b[1].key, ErrorReason.model_error,
                                              f"{type(e).__name__}: {e}", attempts=1,
                                              latency_s=time.monotonic() - t0)) for b in batch]
        ids = inputs["input_ids"]
        new = out[:, ids.shape[1]:]
        decoded = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        img_id = self.image_token_id() if images else None
        latency = time.monotonic() - t0
        results = []
        for row, (i, req, _, _) in enumerate(batch):
            mask = inputs["attention_mask"][row].bool()
            seqs = range(row * req.n, (row + 1) * req.n)
            if not any(decoded[s].strip() for s in seqs):
                results.append((i, ChatResult.failure(req.key, ErrorReason.empty_response,
                                                      "the model generated no text", attempts=1,
                                                      latency_s=latency)))
                continue
            if req.json_mode and all(parse_json_reply(decoded[s])[1] for s in seqs):
                results.append((i, ChatResult.failure(req.key, ErrorReason.malformed_response,
                                                      f"JSON was asked for, the reply is not JSON: "
                                                      f"{decoded[seqs[0]][:200]!r}", attempts=1, latency_s=latency)))
                continue
            results.append((i, ChatResult(
                key=req.key, texts=[decoded[s] for s in seqs], ok=True,
                prompt_tokens=int(mask.sum()),
                completion_tokens=sum(self._completion_len(new[s]) for s in seqs),
                visual_tokens=int((ids[row][mask] == img_id).sum()) if img_id is not None else 0,
                attempts=1, latency_s=latency)))
        return results

    def _completion_len(self, tokens: Any) -> int:
        """Generated tokens up to and including the first EOS (padding excluded)."""
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        for n, t in enumerate(tokens.tolist(), start=1):
            if t in eos_ids:
                return n
        return len(tokens)
