"""Scoring open-ended answers: teacher-as-judge, embedding similarity, or token F1."""
from __future__ import annotations

from typing import Sequence

from synth.backends.parsing import parse_json_reply
from synth.backends.types import ChatRequest, ChatResult
from synth.prompting import NEWEST, PromptSet
from synth.replies import judge_reply


def judge_request(key: str, question: str, reference: str, candidate: str,
                  prompts: PromptSet = NEWEST) -> ChatRequest:
    prompt = prompts("judge_answer").render(question=question, reference=reference, candidate=candidate)
    reply = judge_reply()
    return ChatRequest(key=key, system=None, prompt=prompt, max_tokens=reply.max_tokens, temperature=0.0, json_mode=True,
                       json_schema=reply.response_format()["json_schema"])


def judge_score(result: ChatResult) -> float | None:
    """The judge's score in [0, 1], or None when it did not answer usable JSON."""
    if not result.ok or not result.texts:
        return None
    parsed, error = parse_json_reply(result.texts[0])
    if error or not isinstance(parsed, dict):
        return None
    try:
        return min(1.0, max(0.0, float(parsed.get("score"))))
    except (TypeError, ValueError):
        return None


class EmbeddingJudge:
    """Cosine similarity of mean-pooled hidden states of a local text encoder (offline)."""

    def __init__(self, model_path: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModel.from_pretrained(model_path).eval()

    def embed(self, texts: Sequence[str]):
        import torch

        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt")
        batch.pop("token_type_ids", None) if "token_type_ids" not in self.model.forward.__code__.co_varnames else None
        with torch.no_grad():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def scores(self, references: Sequence[str], candidates: Sequence[str]) -> list[float]:
        if not references:
            return []
        a, b = self.embed(references), self.embed(candidates)
        return [max(0.0, float(x)) for x in (a * b).sum(-1)]
