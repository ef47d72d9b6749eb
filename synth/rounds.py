"""Model stages as rounds: the logic says what to ask, an executor decides where it runs.

Synthesis and verification are multi-round per video (captions -> summaries ->
description -> QA; k answers -> blind pass -> judge -> re-confirmation). Each stage
writes its rounds once, as a generator that yields a `Round` (which model, which
requests, for which videos) and receives the results in request order. Two executors
drive the same generator:

- in an actor (`ModelStage.process_batch`): each round is one `generate` call on the
  replica's own backend (openai / transformers);
- in passes (`pipeline.runner.run_waves`): each round of a wave of videos is one Ray
  Data pass, through a ray.data.llm vLLM processor or an actor pool of backends, so
  vLLM engines run as ray.data.llm intends: one pass over many rows.
"""
from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Generator, Iterator, Sequence

from pipeline.records import Cost, VideoTask
from pipeline.stage import Stage
from synth.backends.base import ModelBackend, make_backend
from synth.backends.config import BackendConfig
from synth.backends.types import ChatRequest, ChatResult



@dataclass
class Round:
    """One round of requests to one model role ("teacher" or "verifier").

    `owners[i]` is the video whose `requests[i]` it is: its cost goes to `owners[i]`'s
    `bucket` counter (`cost` for the teacher, `verify_cost` for the verifier).
    """

    name: str
    role: str
    bucket: str
    owners: list[VideoTask] = field(default_factory=list)
    requests: list[ChatRequest] = field(default_factory=list)

    def ask(self, owner: VideoTask, request: ChatRequest) -> None:
        self.owners.append(owner)
        self.requests.append(request)


Rounds = Generator[Round, list[ChatResult], None]
Answer = Callable[[Round], list[ChatResult]]


def add_cost(task: VideoTask, result: ChatResult, bucket: str = "cost") -> None:
    """Count a request and its tokens on the task (`cost`: teacher, `verify_cost`: verifier).

    A result served from already-paid results counts as `cached_requests` only."""
    cost: Cost = getattr(task, bucket)
    if result.cached:
        cost.cached_requests += 1
        return
    cost.requests += 1
    cost.failed_requests += 0 if result.ok else 1
    cost.prompt_tokens += result.prompt_tokens
    cost.visual_tokens += result.visual_tokens
    cost.output_tokens += result.completion_tokens


def request_digest(role: str, req: ChatRequest) -> str:
    """What a request asks, hashed: equal digests get equal answers (its key is not part of it)."""
    h = hashlib.sha256()
    for part in (role, req.system or "", req.prompt, req.max_tokens, req.temperature, req.json_mode, req.n, req.seed):
        h.update(repr(part).encode())
        h.update(b"\x00")
    for f in req.frames:
        h.update(f"{f.timestamp_s:.6f}|{f.mime}|".encode())
        h.update((f.digest or hashlib.sha1(f.image).hexdigest()[:16]).encode())
    return h.hexdigest()


Failures = dict[int, Counter]  # id(video task) -> Counter of "round: error_reason"


def drive(rounds: Rounds, answer: Answer, memo: dict[str, ChatResult] | None = None) -> Failures:
    """Run a stage's rounds to the end, answering each with `answer` and counting cost.

    An empty round is answered with no results without calling `answer`. With a `memo`,
    requests answered well before (an earlier attempt at the same batch) are served from
    it, marked `cached`, and not sent again. Returns the failed requests per video.
    """
    failures: Failures = {}
    try:
        rnd = next(rounds)
        while True:
            results = _answer(rnd, answer, memo) if rnd.requests else []
            if len(results) != len(rnd.requests):
                raise RuntimeError(f"round {rnd.name}: {len(results)} results for {len(rnd.requests)} requests")
            for owner, result in zip(rnd.owners, results):
                add_cost(owner, result, rnd.bucket)
                if not result.ok:
                    failures.setdefault(id(owner), Counter())[f"{rnd.name}: {result.error_reason}"] += 1
            rnd = rounds.send(results)
    except StopIteration:
        return failures


def reject_incomplete(tasks: Sequence[VideoTask], failures: Failures, stage: str) -> None:
    """A video with a request that got no usable answer (after the backend's retries) is not
    committed as complete: its captions, QA or verdicts would be silently missing. It is
    rejected as `model_error`, which the next run retries (answers already paid for are
    reused from the result cache)."""
    from pipeline.records import Reason

    for task in tasks:
        failed = failures.get(id(task))
        if failed and not task.rejected:
            detail = ", ".join(f"{k} x{v}" for k, v in failed.most_common())
            task.reject(Reason.model_error, f"{stage}: {sum(failed.values())} model request(s) got no usable "
                        f"answer after retries ({detail}); the next run asks again", stage=stage)


def _answer(rnd: Round, answer: Answer, memo: dict[str, ChatResult] | None) -> list[ChatResult]:
    if memo is None:
        return answer(rnd)
    digests = [request_digest(rnd.role, r) for r in rnd.requests]
    todo = [i for i, d in enumerate(digests) if d not in memo]
    fresh: dict[int, ChatResult] = {}
    if todo:
        sub = Round(rnd.name, rnd.role, rnd.bucket, [rnd.owners[i] for i in todo], [rnd.requests[i] for i in todo])
        fresh = dict(zip(todo, answer(sub)))
        for i, result in fresh.items():
            if result.ok:  # failures are not remembered: a retry asks again
                memo[digests[i]] = result
    return [fresh[i] if i in fresh else replace(memo[d], key=req.key, cached=True)
            for i, (req, d) in enumerate(zip(rnd.requests, digests))]


class Memoized:
    """Mixin: one memo of paid-for results per `apply_stage` call (a batch and its per-row retries)."""

    memo: dict[str, ChatResult] | None = None

    @contextlib.contextmanager
    def batch_scope(self) -> Iterator[None]:
        self.memo = {}
        try:
            yield
        finally:
            self.memo = None


class ModelStage(Memoized, Stage):
    """A stage whose work is `rounds()`; in an actor, each role has its own backend.

    Subclasses set `roles` (role -> BackendConfig) in `__init__` and may pass factories
    (tests inject backends). `process_batch` runs every round in this process.
    """

    roles: dict[str, BackendConfig]
    factories: dict[str, Callable[[], ModelBackend]]

    def rounds(self, tasks: Sequence[VideoTask]) -> Rounds:  # pragma: no cover - abstract
        raise NotImplementedError

    def setup(self) -> None:
        self.backends: dict[str, ModelBackend] = {}
        for role, cfg in self.roles.items():
            factory = self.factories.get(role) or (lambda c=cfg: make_backend(c))
            backend = factory()
            backend.setup()
            self.backends[role] = backend

    def model_name(self, role: str) -> str:
        backend = getattr(self, "backends", {}).get(role)
        return getattr(backend, "name", None) or self.roles[role].model

    def process_batch(self, tasks: Sequence[VideoTask]) -> list[VideoTask]:
        if not hasattr(self, "backends"):
            self.setup()
        failures = drive(self.rounds(tasks), lambda rnd: self.backends[rnd.role].generate(rnd.requests), self.memo)
        reject_incomplete(tasks, failures, self.name)
        return list(tasks)
