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
from synth.backends.messages import frame_clock_ms, request_to_hf_messages, request_to_plain_prompt
from synth.backends.parsing import parse_json_reply
from synth.backends.types import ChatRequest, ChatResult, ErrorReason
from synth.backends.visual import video_input

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
        self.as_video = False  # frames as one video (Qwen-VL processors with a video processor)
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
        wants_video = video_input(self.cfg.model, self.cfg.model_family, self.cfg.video_input)
        self.as_video = wants_video and getattr(self.processor, "video_processor", None) is not None
        if wants_video and not self.as_video:
            log.warning("%s: video input asked for, but the processor has no video processor (a Qwen-VL "
                        "video processor needs torchvision); frames go as separate images", self.path)
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

    def render(self, req: ChatRequest, frames: list[Any], as_video: bool = False) -> str:
        """The prompt text: chat template when there is one, a plain prompt otherwise."""
        template_owner = self.processor if getattr(self.processor, "chat_template", None) \
            else self.tokenizer
        if getattr(template_owner, "chat_template", None):
            if self.is_multimodal:
                messages = request_to_hf_messages(req, frames, as_video=as_video)
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
                media = self._media(frames, decode_frames(frames))
            except Exception as e:  # PIL raises several types for corrupt bytes
                results[i] = ChatResult.failure(req.key, ErrorReason.bad_request,
                                                f"undecodable frame: {type(e).__name__}: {e}")
                continue
            prepared.append((i, req, self.render(req, frames, "videos" in media), media))

        def sampling(item: tuple[int, ChatRequest, str, list[Any]]) -> tuple[int, float, int]:
            r = item[1]
            return (r.max_tokens, r.temperature, r.n)

        unshared = []
        for group in self._prefix_groups(prepared):
            done = self._generate_shared(group) if len(group) > 1 and self.tcfg.share_prefix else None
            if done is None:
                unshared += group
            else:
                results.update(done)
        unshared.sort(key=lambda item: item[0])
        for _, group in groupby(unshared, key=sampling):
            items = list(group)
            for start in range(0, len(items), self.tcfg.batch_size):
                batch = items[start:start + self.tcfg.batch_size]
                for i, res in self._generate_batch(batch):
                    results[i] = res
        return [results[i] for i in range(len(requests))]

    # --- one video prefix for many requests ----------------------------------------------
    @staticmethod
    def _prefix_groups(prepared: list[tuple[int, ChatRequest, str, list[Any]]]) -> list[list[tuple]]:
        """Requests that show the same frames with the same system prompt (a video's questions)."""
        from synth.backends.openai_backend import prefix_key

        groups: dict[tuple, list[tuple]] = {}
        for item in prepared:
            key = prefix_key(item[1])
            groups.setdefault(key if key[1] else ("unique", item[0]), []).append(item)
        return list(groups.values())

    def _media(self, frames: list[Any], images: list[Any]) -> dict[str, list[Any]]:
        """What the processor is given for one request: its frames as images, or as one video with
        the frames' real times (metadata on a millisecond clock, frames not resampled)."""
        if not images:
            return {}
        if not (self.as_video and len(images) >= 2):
            return {"images": images}
        from transformers.video_utils import VideoMetadata

        ms = frame_clock_ms(frames)
        return {"videos": [images], "video_metadata": [VideoMetadata(total_num_frames=ms[-1] + 1, fps=1000.0,
                                                                     frames_indices=ms)]}

    def _processor_kwargs(self, media: list[dict[str, list[Any]]]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for m in media:
            for k, v in m.items():
                kwargs.setdefault(k, []).extend(v)
        if "videos" in kwargs:
            kwargs["do_sample_frames"] = False  # the frames are already sampled
        return kwargs

    def _visual_ids(self) -> set[int]:
        ids = {self.image_token_id(), getattr(self.processor, "video_token_id", None)}
        return {i for i in ids if i is not None}

    def _is_visual(self, ids: Any) -> Any:
        """Which token ids are image or video placeholders (the model's own visual tokens)."""
        import torch

        mask = torch.zeros_like(ids, dtype=torch.bool)
        for tid in self._visual_ids():
            mask |= ids == tid
        return mask

    def _encode(self, text: str, media: dict[str, list[Any]]) -> Any:
        kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt", **self._processor_kwargs([media])}
        inputs = (self.processor(**kwargs) if self.is_multimodal else self.tokenizer([text], return_tensors="pt"))
        inputs = inputs.to(self.device)
        for key in ("pixel_values", "pixel_values_videos"):
            if key in inputs:
                inputs[key] = inputs[key].to(self.model.dtype)
        return inputs

    def _prefill(self, enc: list[Any]) -> tuple[Any, int] | None:
        """The KV cache of the tokens every request of a group starts with (its frames included)."""
        import torch
        from transformers import DynamicCache

        ids = [e["input_ids"][0] for e in enc]
        plen = min(len(x) for x in ids)
        for other in ids[1:]:
            diff = (ids[0][:plen] != other[:plen]).nonzero()
            plen = min(plen, int(diff[0]) if len(diff) else plen)
        vis = self._is_visual(ids[0]).nonzero()
        if plen == 0 or any(len(x) <= plen for x in ids) or (len(vis) and int(vis[-1]) >= plen):
            return None  # nothing shared, a request that is all prefix, or frames not all in the prefix
        # per-token inputs (Qwen3-VL's mm_token_type_ids) cover the prefix only, like its ids
        prefix = {k: (v[:, :plen] if v.dim() == 2 and v.shape[1] == len(ids[0]) else v)
                  for k, v in enc[0].items() if k not in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            out = self.model(input_ids=ids[0][:plen][None], attention_mask=torch.ones(1, plen, dtype=torch.long,
                             device=self.device), use_cache=True,
                             **{self._cache_kwarg(): DynamicCache(config=self.model.config)}, **prefix)
        return getattr(out, "cache", None) or out.past_key_values, plen

    def _cache_kwarg(self) -> str:
        """The name models take a KV cache under: `cache` in newer transformers (5.25), `past_key_values` in older ones (5.19)."""
        import inspect

        return "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"

    def _continue(self, cache: Any, enc: Any, req: ChatRequest, max_new_tokens: int, greedy: bool) -> Any:
        """Generate from a copy of the prefix cache: n samples, each a row of the copy."""
        import copy

        import torch

        c = copy.deepcopy(cache)
        n = 1 if greedy else req.n  # greedy: the n samples are one sequence, computed once
        if n > 1:
            c.batch_repeat_interleave(n)
        ids = enc["input_ids"].repeat(n, 1)
        extra = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask") and not k.startswith("pixel")}
        self._set_rope_deltas(ids, enc)
        gen: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        gen.update(do_sample=False) if greedy else gen.update(do_sample=True, temperature=req.temperature)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **{self._cache_kwarg(): c},
                                      **extra, **gen)
        return out[:, ids.shape[1]:]

    def _set_rope_deltas(self, ids: Any, enc: Any) -> None:
        """Qwen-VL (multimodal rope): this request's position offset, from its whole prompt. Generating
        from a prefix cache, the model would compute it from the uncached part alone, against whole-prompt
        masks and token types (an IndexError on Qwen3-VL); with the offset set, it places the new tokens
        after the cached ones as the plain path does. Models without multimodal rope are left alone."""
        import inspect

        import torch

        inner = getattr(self.model, "model", None)
        rope_index = getattr(inner, "get_rope_index", None)
        if rope_index is None or not hasattr(inner, "rope_deltas"):
            return
        params = inspect.signature(rope_index).parameters
        kwargs = {k: (v.repeat(len(ids) // len(v), *[1] * (v.dim() - 1)) if k == "mm_token_type_ids" else v)
                  for k, v in enc.items() if k in params and k not in ("input_ids", "attention_mask")}
        if "attention_mask" in params:
            kwargs["attention_mask"] = torch.ones_like(ids)
        with torch.inference_mode():
            _, inner.rope_deltas = rope_index(ids, **kwargs)

    def _sharing_reproduces(self, cache: Any, enc: Any, item: tuple) -> bool:
        """Once per backend: greedy tokens from the shared prefix == those of the plain path. A model
        whose cache class cannot be copied and continued this way (a custom M2LA cache) fails here."""
        import torch

        req = item[1]
        probe = ChatRequest(key=req.key, system=req.system, prompt=req.prompt, n=1, temperature=0.0)
        try:
            shared = self._continue(cache, enc, probe, 8, greedy=True)
            with torch.inference_mode():
                plain = self.model.generate(**enc, max_new_tokens=8, do_sample=False,
                                            pad_token_id=self.tokenizer.pad_token_id)[:, enc["input_ids"].shape[1]:]
            return shared[0].tolist() == plain[0].tolist()
        except Exception as e:  # noqa: BLE001 - any failure means: do not share
            log.warning("shared-prefix check raised %s: %s", type(e).__name__, e)
            return False

    def _generate_shared(self, group: list[tuple[int, ChatRequest, str, list[Any]]]) -> dict[int, ChatResult] | None:
        """Answer a group from one prefill of its frames; None: not possible (the plain path answers)."""
        if getattr(self, "_sharing", None) is False:
            return None
        t0 = time.monotonic()
        try:
            enc = [self._encode(text, images) for _, _, text, images in group]
            shared = self._prefill(enc)
            if shared is None:
                return None
            cache, plen = shared
            if getattr(self, "_sharing", None) is None:
                self._sharing = self._sharing_reproduces(cache, enc[0], group[0])
                if not self._sharing:
                    log.warning("%s: answers from a shared video prefix differ from plain generation; every "
                                "request prefills its own frames", self.path)
                    return None
            out: dict[int, ChatResult] = {}
            for pos, ((i, req, _, _), e) in enumerate(zip(group, enc)):
                new = self._continue(cache, e, req, req.max_tokens, greedy=req.temperature <= 0)
                texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
                texts = texts * req.n if len(texts) == 1 else texts
                ids = e["input_ids"][0]
                out[i] = self._result(req, texts, new, prompt_tokens=int(len(ids)),
                                      visual=int(self._is_visual(ids).sum()),
                                      cached=plen if pos else 0, latency=time.monotonic() - t0)
            return out
        except Exception as e:  # noqa: BLE001 - OOM, shape errors: the plain path answers instead
            log.warning("shared-prefix generation failed (%s: %s); falling back", type(e).__name__, e)
            return None

    def _result(self, req: ChatRequest, texts: list[str], new: Any, prompt_tokens: int, visual: int, cached: int,
                latency: float) -> ChatResult:
        """One request's result from its decoded samples (failed when empty, or not JSON where asked)."""
        if not any(t.strip() for t in texts):
            return ChatResult.failure(req.key, ErrorReason.empty_response, "the model generated no text",
                                      attempts=1, latency_s=latency)
        if req.json_mode and all(parse_json_reply(t)[1] for t in texts):
            return ChatResult.failure(req.key, ErrorReason.malformed_response,
                                      f"JSON was asked for, the reply is not JSON: {texts[0][:200]!r}",
                                      attempts=1, latency_s=latency)
        return ChatResult(key=req.key, texts=texts, ok=True, prompt_tokens=prompt_tokens,
                          completion_tokens=sum(self._completion_len(row) for row in new),
                          visual_tokens=visual, cached_tokens=cached, attempts=1, latency_s=latency)

    def _generate_batch(self, batch: list[tuple[int, ChatRequest, str, list[Any]]]
                        ) -> list[tuple[int, ChatResult]]:
        import torch

        t0 = time.monotonic()
        req0 = batch[0][1]
        try:
            texts = [b[2] for b in batch]
            kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True,
                                      **self._processor_kwargs([b[3] for b in batch])}
            inputs = self.processor(**kwargs) if self.is_multimodal else \
                self.tokenizer(texts, return_tensors="pt", padding=True)
            inputs = inputs.to(self.device)
            for key in ("pixel_values", "pixel_values_videos"):
                if key in inputs:
                    inputs[key] = inputs[key].to(self.model.dtype)
            gen: dict[str, Any] = {"max_new_tokens": req0.max_tokens,
                                   # greedy: the n samples are one sequence (transformers refuses n > 1)
                                   "num_return_sequences": req0.n if req0.temperature > 0 else 1,
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

        latency = time.monotonic() - t0
        results = []
        for row, (i, req, _, _) in enumerate(batch):
            mask = inputs["attention_mask"][row].bool()
            seqs = list(range(row * req.n, (row + 1) * req.n)) if req.temperature > 0 else [row] * req.n
            results.append((i, self._result(
                req, [decoded[s] for s in seqs], new[sorted(set(seqs))], prompt_tokens=int(mask.sum()),
                visual=int(self._is_visual(ids[row][mask]).sum()), cached=0,
                latency=latency)))
        return results

    def _completion_len(self, tokens: Any) -> int:
        """Generated tokens up to and including the first EOS (padding excluded)."""
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        for n, t in enumerate(tokens.tolist(), start=1):
            if t in eos_ids:
                return n
        return len(tokens)
