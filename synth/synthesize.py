"""The synthesis stage: timestamped captions -> hierarchy -> description -> QA items -> rows.

The rounds of a batch (or a wave) of videos: captions of all windows of all videos in
one round, then summaries, then descriptions, then QA writing (text-only). Batching
across videos keeps a remote endpoint's concurrency or an engine's batch full. Where the
rounds run (an actor's own backend, or Ray Data passes) is `synth.rounds`' business.
"""
from __future__ import annotations

import zlib
from typing import Callable, Sequence

from pipeline.records import Caption, Synthesis, VideoTask
from synth.backends.base import ModelBackend
from synth.backends.parsing import parse_json_reply
from synth.backends.types import ChatRequest, ChatResult
from synth.captions import (Window, caption_requests, describe_request, make_windows,
                            summary_requests, timestamped)
from synth.composed import MomentPlan, best_windows, composed_items, moments_request, parse_moments, plan_moments
from synth.evaluator import snap_span
from synth.config import SynthConfig
from synth.items import QAItem, RejectedItem, balance_letters, check_item, drop_near_duplicates
from synth.prompting import PromptSet
from synth.replies import qa_items
from synth.rounds import ModelStage, Round, Rounds
from synth.taxonomy import ItemReason, taxonomy_text

PROMPTS = ("caption_window", "summarize", "describe_moments", "describe_video", "write_qa")


class SynthesizeStage(ModelStage):
    """Teacher synthesis for accepted videos; row failures become rejected items, not crashes."""

    name = "synthesize"
    version = "1"
    reads = frozenset({"frames", "subtitles", "scenes", "duration_s"})
    writes = frozenset({"synthesis", "captions", "cost"})

    def __init__(self, cfg: SynthConfig, backend_factory: Callable[[], ModelBackend] | None = None) -> None:
        if cfg.teacher is None:
            raise ValueError("SynthesizeStage needs synth.teacher")
        self.cfg = cfg
        teacher = cfg.teacher
        self.roles = {"teacher": teacher}
        self.factories = {"teacher": backend_factory} if backend_factory else {}
        self.resources = teacher.actor_resources(cfg.replicas, cfg.videos_per_batch)
        self.env_vars = teacher.env_vars()
        self.prompts = PromptSet.of(cfg.prompts)

    def sections(self) -> dict[str, SynthConfig]:
        return {"synth": self.cfg}

    def key_extras(self) -> dict[str, str]:
        """Named apart so `curate plan` says what changed: the prompt versions and the model."""
        return {"prompts": self.prompts.tags(PROMPTS), "model": f"{self.cfg.teacher.kind}:{self.cfg.teacher.model}"}

    def snapshot(self, task: VideoTask) -> dict:
        """The frames (timestamps, digests, sizes) and subtitle lines the requests were built from."""
        return {"frames": [[f.timestamp_s, f.digest, f.width, f.height, f.scene_index, f.index, f.mime]
                           for f in task.frames],
                "subtitles": [[c.start_s, c.end_s, c.text] for c in task.subtitles]}

    @staticmethod
    def _text(res: ChatResult) -> str | None:
        return res.texts[0].strip() if res.ok and res.texts and res.texts[0].strip() else None

    def rounds(self, tasks: Sequence[VideoTask]) -> Rounds:
        cfg, system = self.cfg, self.cfg.system_prompt
        windows = {t.video_id: make_windows(t, cfg.caption.window_s) for t in tasks}
        # round 1: window captions from frames (multimodal)
        rnd, targets = Round("caption", "teacher", "cost"), []
        for t in tasks:
            for w, r in zip(windows[t.video_id], caption_requests(t, windows[t.video_id], cfg.caption, system, self.prompts)):
                rnd.ask(t, r), targets.append(w)
        for w, res in zip(targets, (yield rnd)):
            w.caption = self._text(res)
        # round 2 (text): summaries of caption groups (skipped when one group covers the video), and
        # the time-free descriptions of the windows that composed items are built on
        summaries: dict[str, list[str]] = {}
        plans = {t.video_id: plan_moments(windows[t.video_id], cfg.qa.composed_grounding, cfg.qa.composed_order,
                                          cfg.qa.min_caption_words) for t in tasks}
        rnd, kinds = Round("summarize", "teacher", "cost"), []
        for t in tasks:
            s_reqs, groups = summary_requests(t, windows[t.video_id], cfg.caption, system, self.prompts)
            summaries[t.video_id] = [timestamped(windows[t.video_id])] if len(groups) == 1 else []
            for r in s_reqs if len(groups) > 1 else []:
                rnd.ask(t, r), kinds.append("summary")
            moments = moments_request(t.video_id, float(t.duration_s or 0.0), windows[t.video_id],
                                      plans[t.video_id], system, self.prompts)
            if moments is not None:
                rnd.ask(t, moments), kinds.append("moments")
        queries: dict[str, dict[int, str]] = {t.video_id: {} for t in tasks}
        for t, kind, res in zip(rnd.owners, kinds, (yield rnd)):
            if kind == "summary" and self._text(res):
                summaries[t.video_id].append(self._text(res))
            elif kind == "moments" and self._text(res):
                queries[t.video_id] = parse_moments(self._text(res))
        # round 3: whole-video description
        rnd = Round("describe", "teacher", "cost")
        for t in tasks:
            if summaries[t.video_id]:
                rnd.ask(t, describe_request(t, summaries[t.video_id], cfg.caption, system, self.prompts))
        descriptions: dict[str, str] = {}
        for t, res in zip(rnd.owners, (yield rnd)):
            if self._text(res):
                descriptions[t.video_id] = self._text(res)
        # round 4: QA writing from the timestamped captions (text only)
        qa_prompt = self.prompts("write_qa")
        rnd = Round("write_qa", "teacher", "cost")
        for t in tasks:
            if any(w.caption for w in windows[t.video_id]) and cfg.qa.items_per_video:
                reply = qa_items(cfg.qa.items_per_video, float(t.duration_s or 0.0), ceiling=cfg.qa.max_tokens)
                rnd.ask(t, ChatRequest(
                    key=f"{t.video_id}/qa", system=system, json_mode=True,
                    max_tokens=min(reply.max_tokens, cfg.qa.max_tokens), json_schema=reply.response_format()["json_schema"],
                    temperature=cfg.qa.temperature,
                    prompt=qa_prompt.render(duration=t.duration_s or 0.0, count=cfg.qa.items_per_video,
                                            captions=timestamped(windows[t.video_id]), taxonomy=taxonomy_text(),
                                            description=descriptions.get(t.video_id, "(none)"))))
        replies = {t.video_id: res for t, res in zip(rnd.owners, (yield rnd))}
        for t in tasks:
            self._finish(t, windows[t.video_id], descriptions.get(t.video_id), replies.get(t.video_id),
                         plans[t.video_id], queries[t.video_id])

    def _finish(self, task: VideoTask, windows: list[Window], description: str | None,
                reply: ChatResult | None, plan: MomentPlan, queries: dict[int, str]) -> None:
        """Parse, filter and compose the items of one video; attach its output rows.

        A failed request makes the whole video incomplete (`rounds.reject_incomplete`), so
        only answered requests reach this point."""
        cfg, versions, duration = self.cfg, self.prompts.tags(PROMPTS), float(task.duration_s or 0.0)
        rejected: list[RejectedItem] = []
        teacher_items: list[QAItem] = []
        if reply is not None and reply.ok:
            parsed, error = parse_json_reply(reply.texts[0] if reply.texts else "")
            raw_items = parsed.get("items") if isinstance(parsed, dict) else parsed
            if error or not isinstance(raw_items, list):
                rejected.append(RejectedItem(ItemReason.unparseable, "teacher reply is not a JSON list of items",
                                             (reply.texts or [""])[0][:2000]))
                raw_items = []
            for raw in raw_items:
                checked = check_item(raw, duration, versions)
                if isinstance(checked, QAItem) and checked.query is not None:
                    checked = _vet_teacher_grounding(checked, windows, raw)
                (teacher_items if isinstance(checked, QAItem) else rejected).append(checked)
        composed, dropped = composed_items(plan, queries, windows, duration, versions)
        rejected += dropped
        # composed items are distinct by construction (vetted queries) and share the evaluators'
        # template, so only the teacher's questions are de-duplicated
        teacher_items, dupes = drop_near_duplicates(teacher_items, cfg.qa.dedupe_threshold)
        rejected += dupes
        kept = composed + teacher_items
        # each video starts its A-B-C-D cycle at its own (stable) offset: few MC items per
        # video must not all land on A and B across the dataset
        balance_letters(kept, offset=zlib.crc32(task.video_id.encode()) % 4)
        for i, item in enumerate(kept):
            item.index = i
        whole = snap_span(0.0, duration, duration)
        if description and whole is not None:
            kept.append(QAItem(category="holistic", qa_type="summary", format="description",
                               question="Describe this video in detail.", answer=description,
                               evidence_start_s=whole[0], evidence_end_s=whole[1], prompt_version=versions,
                               index=len(kept)))
        task.synthesis = Synthesis(teacher=self.model_name("teacher"), system_prompt=cfg.system_prompt,
                                   items=kept, rejected=rejected)
        task.captions = [Caption(w.start_s, w.end_s, w.caption) for w in windows if w.caption]


def _vet_teacher_grounding(item: QAItem, windows: list[Window], raw: object) -> QAItem | RejectedItem:
    """A teacher's grounding query must fit the window(s) its answer covers better than any other."""
    best = best_windows(item.query or "", windows)
    overlaps = [w for w in best if w.start_s < item.evidence_end_s and w.end_s > item.evidence_start_s]
    if best and len(overlaps) == len(best):
        return item
    return RejectedItem(ItemReason.ambiguous_query, "the query fits a window outside the answer span as well"
                        if best else "the query matches no caption", raw)
