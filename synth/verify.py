"""Cross-verification: the in-training model answers every question without the teacher's answer.

Per item: k sampled answers from the video frames (scored by option letter, temporal IoU,
or a judge for open-ended text), a blind pass without the video (text-answerable
questions), and on disagreement an optional re-confirmation by the teacher. The result is
a `verification` record with a decision:

- keep:   the verifier agrees (pass rate >= policy.agree_rate) and it is not blind-answerable;
- hard:   the verifier disagrees but the answer stands: measured by construction (composed
          items) or re-confirmed by the teacher; good RL / distillation material;
- reject: blind-answerable, or a teacher claim the verifier disputes and the teacher does
          not re-confirm.
Descriptions are always kept (the teacher's long-form text is the target); their judge
score decides whether they go to distillation.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Generator, Sequence

from pipeline.records import Verification, VideoTask
from synth.backends.base import ModelBackend
from synth.backends.config import BackendConfig
from synth.backends.parsing import parse_json_reply
from synth.backends.types import ChatRequest, ChatResult
from synth.captions import frames_in
from synth.config import VerifyConfig
from synth.items import QAItem
from synth.judges import EmbeddingJudge, judge_request, judge_score
from synth.prompting import PromptSet
from synth.replies import confirmed
from synth.rows import question_text
from synth.scoring import parse_letter, parse_span, temporal_iou, token_f1
from synth.rounds import ModelStage, Round, Rounds

BLIND_PREFIX = "You cannot see the video this question is about. Give your best guess anyway.\n"


def verifier_prompt(item: QAItem) -> str:
    """Exactly what a policy is asked in RL (grounding: the evaluators' template; multiple
    choice: lettered options and the answer-format line), so the pass rate is the RL one."""
    return question_text(item)


def sample_score(item: QAItem, answer: str) -> float | None:
    """Score of one answer where it needs no judge; None for open-ended / description."""
    if item.format == "multiple_choice":
        return 1.0 if parse_letter(answer) == item.answer_letter else 0.0
    if item.format == "grounding":
        return temporal_iou(parse_span(answer), (item.evidence_start_s, item.evidence_end_s))
    return None


class VerifyStage(ModelStage):
    """Runs the verifier (and the teacher as judge / re-confirmer) over every item of a video."""

    name = "verify"
    version = "1"
    reads = frozenset({"synthesis", "frames"})
    writes = frozenset({"synthesis", "verify_cost"})

    def __init__(self, cfg: VerifyConfig, teacher: BackendConfig | None = None,
                 verifier_factory: Callable[[], ModelBackend] | None = None,
                 teacher_factory: Callable[[], ModelBackend] | None = None) -> None:
        if cfg.verifier is None:
            raise ValueError("VerifyStage needs verify.verifier")
        self.cfg = cfg
        verifier = cfg.verifier
        self.judge = cfg.judge_kind(has_teacher=teacher is not None)
        if self.judge == "embedding" and not cfg.embedding_model:
            raise ValueError("verify.judge=embedding needs verify.embedding_model (a local model directory)")
        self.needs_teacher = teacher is not None and (self.judge == "teacher" or cfg.reconfirm_with_teacher)
        self.roles = {"verifier": verifier, **({"teacher": teacher} if self.needs_teacher else {})}
        self.factories = {role: f for role, f in (("verifier", verifier_factory), ("teacher", teacher_factory)) if f}
        self.resources = verifier.actor_resources(cfg.replicas, cfg.videos_per_batch)
        self.prompts = PromptSet.of(cfg.prompts)
        self.env_vars = tuple(dict.fromkeys(n for b in self.roles.values() for n in b.env_vars()))
        self.embedder: EmbeddingJudge | None = None

    def sections(self) -> dict[str, VerifyConfig | BackendConfig]:
        """Its own section, and the teacher's where the teacher judges or re-confirms."""
        teacher = self.roles.get("teacher")
        return {"verify": self.cfg, **({"synth.teacher": teacher} if teacher else {})}

    def key_extras(self) -> dict[str, str]:
        """What its verdicts depend on, named apart: prompt versions, the verifier, the judge."""
        teacher = self.roles.get("teacher")
        return {"prompts": self.prompts.tags(("judge_answer", "reconfirm")),
                "model": f"{self.roles['verifier'].kind}:{self.roles['verifier'].model}",
                "judge": f"{self.judge}:{teacher.kind}:{teacher.model}" if teacher else self.judge}

    def setup(self) -> None:
        super().setup()
        self._load_embedder()

    def _load_embedder(self) -> None:
        if self.judge == "embedding" and self.embedder is None:
            self.embedder = EmbeddingJudge(self.cfg.embedding_model)

    def rounds(self, tasks: Sequence[VideoTask]) -> Rounds:
        cfg = self.cfg
        self._load_embedder()
        jobs = [(t, item) for t in tasks for item in (t.synthesis.items if t.synthesis else [])]
        owners = [t for t, _ in jobs]
        name = self.model_name("verifier")
        # 1. k answers from the frames, never seeing the teacher's answer
        rnd = Round("verify", "verifier", "verify_cost")
        for i, (t, item) in enumerate(jobs):
            # keys name the item within its video (not its place in the batch): stable across runs
            rnd.ask(t, ChatRequest(key=f"{t.video_id}/verify/{item.index}", system=None, prompt=verifier_prompt(item),
                                   frames=frames_in(t.frames, 0.0, float("inf"), cfg.max_frames),
                                   frames_key=t.frames_key, n=cfg.samples,
                                   temperature=cfg.temperature, max_tokens=cfg.max_tokens))
        answers = [r.texts if r.ok else [] for r in (yield rnd)]
        # 2. the blind pass: same question, no video
        blind: list[str | None] = [None] * len(jobs)
        if cfg.blind_pass:
            idx = [i for i, (_, item) in enumerate(jobs) if item.format != "description"]
            rnd = Round("blind", "verifier", "verify_cost")
            for i in idx:
                rnd.ask(owners[i], ChatRequest(key=f"{jobs[i][0].video_id}/blind/{jobs[i][1].index}", system=None,
                                               prompt=BLIND_PREFIX + verifier_prompt(jobs[i][1]),
                                               max_tokens=cfg.max_tokens, temperature=0.0))
            for i, r in zip(idx, (yield rnd)):
                blind[i] = r.texts[0] if r.ok and r.texts else None
        # 3. scores; open-ended answers go to the judge
        scores: list[list[float]] = [[] for _ in jobs]
        blind_scores: list[float | None] = [None] * len(jobs)
        to_judge: list[tuple[int, str, bool]] = []  # (job, answer, is_blind)
        for i, (_, item) in enumerate(jobs):
            for a in answers[i]:
                s = sample_score(item, a)
                if s is None:
                    to_judge.append((i, a, False))
                else:
                    scores[i].append(s)
            if blind[i] is not None:
                s = sample_score(item, blind[i])
                if s is None:
                    to_judge.append((i, blind[i], True))
                else:
                    blind_scores[i] = s
        judged = yield from self._judge(jobs, to_judge, owners)
        for (i, _, is_blind), s in zip(to_judge, judged):
            if is_blind:
                blind_scores[i] = s
            else:
                scores[i].append(s)
        # 4. decisions; disputed teacher claims go back to the teacher
        passes = [self._passes(item, sc) for (_, item), sc in zip(jobs, scores)]
        pass_rates = [sum(p) / len(p) if p else 0.0 for p in passes]
        blind_ok = [b is not None and self._pass(item, b) for (_, item), b in zip(jobs, blind_scores)]
        disputed = [i for i, (_, item) in enumerate(jobs)
                    if item.source == "teacher" and item.format != "description"
                    and pass_rates[i] < cfg.policy.agree_rate and not blind_ok[i]]
        confirmed = yield from self._reconfirm(jobs, disputed, answers, owners)
        for i, (t, item) in enumerate(jobs):
            item.verification = self._decide(item, name, answers[i], scores[i], pass_rates[i], blind[i],
                                             blind_ok[i], confirmed.get(i))

    def _pass(self, item: QAItem, score: float) -> bool:
        p = self.cfg.policy
        if item.format == "multiple_choice":
            return score >= 1.0
        return score >= (p.pass_iou if item.format == "grounding" else p.pass_judge)

    def _passes(self, item: QAItem, scores: list[float]) -> list[bool]:
        return [self._pass(item, s) for s in scores]

    def _judge(self, jobs, to_judge, owners) -> Generator[Round, list[ChatResult], list[float]]:
        if not to_judge:
            return []
        refs = [jobs[i][1].answer for i, _, _ in to_judge]
        cands = [a for _, a, _ in to_judge]
        if self.judge == "embedding":
            return self.embedder.scores(refs, cands)
        if self.judge == "teacher" and "teacher" in self.roles:
            rnd = Round("judge", "teacher", "cost")
            seen: Counter = Counter()
            for (i, _, is_blind), ref, cand in zip(to_judge, refs, cands):
                task, item = jobs[i]
                j = "blind" if is_blind else seen[i]
                seen[i] += 0 if is_blind else 1
                rnd.ask(owners[i], judge_request(f"{task.video_id}/judge/{item.index}/{j}", item.question, ref, cand,
                                                 self.prompts))
            results = yield rnd
            # a judge that failed to answer falls back to token F1 rather than dropping the sample
            return [s if s is not None else token_f1(c, r)
                    for s, c, r in zip((judge_score(x) for x in results), cands, refs)]
        return [token_f1(c, r) for c, r in zip(cands, refs)]

    def _reconfirm(self, jobs, disputed, answers, owners) -> Generator[Round, list[ChatResult], dict[int, bool]]:
        if not disputed or "teacher" not in self.roles or not self.cfg.reconfirm_with_teacher:
            return {}
        prompt = self.prompts("reconfirm")
        rnd = Round("reconfirm", "teacher", "cost")
        for i in disputed:
            task, item = jobs[i]
            captions = "\n".join(f"[{c.start_s:.1f}-{c.end_s:.1f} s] {c.text}" for c in task.captions)
            rnd.ask(owners[i], ChatRequest(
                key=f"{task.video_id}/reconfirm/{item.index}", system=None, json_mode=True,
                max_tokens=confirmed().max_tokens, json_schema=confirmed().response_format()["json_schema"],
                temperature=0.0,
                prompt=prompt.render(captions=captions, question=verifier_prompt(item), reference=item.answer,
                                     candidate=(answers[i] or ["(no answer)"])[0])))
        out = {}
        for i, r in zip(disputed, (yield rnd)):
            parsed, err = parse_json_reply(r.texts[0]) if r.ok and r.texts else (None, "failed")
            out[i] = bool(isinstance(parsed, dict) and parsed.get("confirmed") is True)
        return out

    def _decide(self, item: QAItem, name: str, answers: list[str], scores: list[float], pass_rate: float,
                blind: str | None, blind_ok: bool, confirmed: bool | None) -> Verification:
        policy = self.cfg.policy
        score = sum(scores) / len(scores) if scores else 0.0
        # a failed request never gets here: the video is incomplete and retried (rounds.reject_incomplete).
        # The blind check comes first: an item answerable without the video is no item, whatever else holds
        if item.format == "description":
            decision, reason = "keep", "description"
        elif blind_ok and policy.reject_blind_answerable:
            decision, reason = "reject", "blind_answerable"
        elif not answers:
            decision, reason = "reject", "verifier_gave_no_answer"
        elif pass_rate >= policy.agree_rate:
            decision, reason = "keep", "verifier_agrees"
        elif item.source == "composed":
            decision, reason = "hard", "measured_truth"
        elif confirmed:
            decision, reason = "hard", "teacher_reconfirmed"
        else:
            decision, reason = "reject", "verifier_disagrees"
        return Verification(verifier=name, answers=[a[:2000] for a in answers], score=round(score, 4),
                            pass_rate=round(pass_rate, 4), k=len(answers),
                            blind_answer=(blind or None) and blind[:2000], blind_answerable=bool(blind_ok),
                            teacher_reconfirmed=confirmed, decision=decision, reason=reason)
