"""Model stages as rounds: the logic says what to ask, an executor decides where it runs.

Synthesis and verification are multi-round per video (captions -> summaries ->
description -> QA; k answers -> blind pass -> judge -> re-confirmation). Each stage
writes its rounds once, as a generator that yields a `Round` (which model, which
requests, for which videos) and receives the results in request order. Two executors
drive the same generator:

- in a replica (`ModelStage.process_batch`; an actor for a backend that loads a model, a
  pooled task for a client of a served model): each round is one `generate` call on the
  replica's own backend (openai / transformers);
- in passes (`pipeline.passes.run_waves`): each round of a wave of videos is one Ray
  Data pass, through a ray.data.llm vLLM processor or an actor pool of backends, so
  vLLM engines run as ray.data.llm intends: one pass over many rows.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Generator, Iterator, Sequence

from pipeline.records import Cost, VideoTask
from pipeline.stage import Stage
from synth.backends.base import ModelBackend, make_backend
from synth.backends.config import BackendConfig
from synth.backends.types import ChatRequest, ChatResult
from synth.results import ResultStore, VideoResults



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
    # frames come first in every prompt: a cached prefix covers the visual tokens first
    cost.visual_prefill_tokens += max(0, result.visual_tokens - result.cached_tokens)
    cost.cached_prompt_tokens += result.cached_tokens
    cost.output_tokens += result.completion_tokens


def request_digest(role: str, req: ChatRequest) -> str:
    """What a request asks, hashed: equal digests get equal answers (its key is not part of it)."""
    h = hashlib.sha256()
    for part in (role, req.system or "", req.prompt, req.max_tokens, req.temperature, req.json_mode, req.n, req.seed,
                 json.dumps(req.json_schema, sort_keys=True) if req.json_schema else None):
        h.update(repr(part).encode())
        h.update(b"\x00")
    for f in req.frames:
        h.update(f"{f.timestamp_s:.6f}|{f.mime}|".encode())
        h.update((f.digest or hashlib.sha1(f.image).hexdigest()[:16]).encode())
    return h.hexdigest()


Failures = dict[int, Counter]  # id(video task) -> Counter of "round: error_reason"
Used = dict[int, dict[str, tuple[str, ChatResult]]]  # id(video task) -> request key -> (digest, result)


@dataclass
class Outcome:
    """What driving a stage's rounds produced: failed requests and every answer used, per video."""

    failures: Failures = field(default_factory=dict)
    used: Used = field(default_factory=dict)


def drive(rounds: Rounds, answer: Answer, memo: dict[str, ChatResult] | None = None,
          identity: Callable[[str], str] = str) -> Outcome:
    """Run a stage's rounds to the end, answering each with `answer` and counting cost.

    An empty round is answered with no results without calling `answer`. Requests whose
    digest is in `memo` (answers already paid for: an earlier attempt at the same batch, or
    the result store) are served from it, marked `cached`, and not sent again; new good
    answers are added to it. `identity(role)` names the model a role's requests go to
    (part of the digest). Returns the failed requests and the answers used, per video.
    """
    out = Outcome()
    try:
        rnd = next(rounds)
        while True:
            digests = [request_digest(identity(rnd.role), r) for r in rnd.requests]
            results = _answer(rnd, digests, answer, memo) if rnd.requests else []
            if len(results) != len(rnd.requests):
                raise RuntimeError(f"round {rnd.name}: {len(results)} results for {len(rnd.requests)} requests")
            for owner, req, digest, result in zip(rnd.owners, rnd.requests, digests, results):
                add_cost(owner, result, rnd.bucket)
                if result.ok:
                    out.used.setdefault(id(owner), {})[req.key] = (digest, result)
                else:
                    out.failures.setdefault(id(owner), Counter())[f"{rnd.name}: {result.error_reason}"] += 1
            rnd = rounds.send(results)
    except StopIteration:
        return out


def reject_incomplete(tasks: Sequence[VideoTask], failures: Failures, stage: str) -> None:
    """A video with a request that got no usable answer (after the backend's retries) is not
    committed as complete: its captions, QA or verdicts would be silently missing. It is
    rejected as `model_error`, which the next run retries (answers already paid for are
    reused from the result store)."""
    from pipeline.records import Reason

    for task in tasks:
        failed = failures.get(id(task))
        if failed and not task.rejected:
            detail = ", ".join(f"{k} x{v}" for k, v in failed.most_common())
            task.reject(Reason.model_error, f"{stage}: {sum(failed.values())} model request(s) got no usable "
                        f"answer after retries ({detail}); the next run asks again", stage=stage)


def _answer(rnd: Round, digests: list[str], answer: Answer, memo: dict[str, ChatResult] | None) -> list[ChatResult]:
    if memo is None:
        return answer(rnd)
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


def run_rounds(stage: "ModelStage", tasks: Sequence[VideoTask], answer: Answer) -> None:
    """Drive `stage`'s rounds over `tasks` with `answer`, the way every executor must.

    Answers the result store holds for these videos are reused (not sent, not paid again);
    every answer a video used is stored back, also for a video left incomplete (the next
    run then asks only what failed); incomplete videos are rejected as `model_error`."""
    memo = stage.memo if stage.memo is not None else {}
    store = stage.results
    if store is not None:
        for task in tasks:
            memo.update(store.load(stage.name, task.video_id).answers)
    outcome = drive(stage.rounds(tasks), answer, memo, stage.model_identity)
    if store is not None:
        for task in tasks:
            used = outcome.used.get(id(task), {})
            store.save(stage.name, task.video_id, VideoResults(
                answers={d: r for d, r in used.values()}, keys={k: d for k, (d, _) in used.items()},
                inputs=stage.snapshot(task)))
    reject_incomplete(tasks, outcome.failures, stage.name)


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
    """A stage whose work is `rounds()`; in a replica (actor or pooled task), each role has its own backend.

    Subclasses set `roles` (role -> BackendConfig) in `__init__` and may pass factories
    (tests inject backends). `process_batch` runs every round in this process.
    """

    runs_rounds = True
    roles: dict[str, BackendConfig]
    factories: dict[str, Callable[[], ModelBackend]]

    def rounds(self, tasks: Sequence[VideoTask]) -> Rounds:  # pragma: no cover - abstract
        raise NotImplementedError

    def holds_model(self) -> bool:
        """A role whose kind loads a model (`transformers`), or a backend a test injected; a
        client of a served model (`openai`) is cheap to set up and runs in pooled tasks."""
        from synth.backends.registry import kind_of

        return bool(self.factories) or any(kind_of(cfg).loads_model for cfg in self.roles.values())

    def setup(self) -> None:
        self.backends: dict[str, ModelBackend] = {}
        for role, cfg in self.roles.items():
            factory = self.factories.get(role) or (lambda c=cfg: make_backend(c))
            backend = factory()
            backend.setup()
            self.backends[role] = backend

    results: "ResultStore | None" = None  # the dataset's store of paid-for answers (set by the job)

    def model_identity(self, role: str) -> str:
        """Who answers a role's requests (part of each request's digest): kind and model name."""
        cfg = self.roles[role]
        return f"{role}|{cfg.kind}|{cfg.model}"

    def snapshot(self, task: VideoTask) -> dict:
        """What `curate plan` needs to rebuild this stage's requests without the video (default: nothing)."""
        return {}

    def model_name(self, role: str) -> str:
        backend = getattr(self, "backends", {}).get(role)
        return getattr(backend, "name", None) or self.roles[role].model

    def process_batch(self, tasks: Sequence[VideoTask]) -> list[VideoTask]:
        if not hasattr(self, "backends"):
            self.setup()
        run_rounds(self, tasks, lambda rnd: self.backends[rnd.role].generate(rnd.requests))
        return list(tasks)
