"""The synthesis stage: timestamped captions -> hierarchy -> description -> QA items -> rows.

The rounds of a batch (or a wave) of videos: captions of all windows of all videos in
one round, then summaries, then descriptions, then QA writing (text-only). Batching
across videos keeps a remote endpoint's concurrency or an engine's batch full. Where the
rounds run (an actor's own backend, or Ray Data passes) is `synth.rounds`' business.
"""
from __future__ import annotations

import zlib
from typing import Callable, Sequence

from pipeline.records import VideoTask
from synth.backends.base import ModelBackend
from synth.backends.parsing import parse_json_reply
from synth.backends.types import ChatRequest, ChatResult
from synth.captions import (Window, caption_requests, describe_request, make_windows,
                            summary_requests, timestamped)
from synth.composed import grounding_items, order_items
from synth.config import SynthConfig
from synth.items import QAItem, RejectedItem, balance_letters, check_item, drop_near_duplicates
from synth.prompting import load_prompt
from synth.rounds import ModelStage, Round, Rounds
from synth.taxonomy import ItemReason

def prompt_versions() -> str:
    return "+".join(load_prompt(n).tag for n in ("caption_window", "summarize", "describe_video", "write_qa"))


class SynthesizeStage(ModelStage):
    """Teacher synthesis for accepted videos; row failures become rejected items, not crashes."""

    name = "synthesize"
    version = "1"

    def __init__(self, cfg: SynthConfig, backend_factory: Callable[[], ModelBackend] | None = None) -> None:
        if cfg.teacher is None:
            raise ValueError("SynthesizeStage needs synth.teacher")
        self.cfg = cfg
        teacher = cfg.teacher
        self.roles = {"teacher": teacher}
        self.factories = {"teacher": backend_factory} if backend_factory else {}
        self.resources = teacher.actor_resources(cfg.replicas, cfg.videos_per_batch)
        self.env_vars = teacher.env_vars()

    @staticmethod
    def _text(res: ChatResult) -> str | None:
        return res.texts[0].strip() if res.ok and res.texts and res.texts[0].strip() else None

    def rounds(self, tasks: Sequence[VideoTask]) -> Rounds:
        cfg, system = self.cfg, self.cfg.system_prompt
        windows = {t.video_id: make_windows(t, cfg.caption.window_s) for t in tasks}
        # round 1: window captions from frames (multimodal)
        rnd, targets = Round("caption", "teacher", "cost"), []
        for t in tasks:
            for w, r in zip(windows[t.video_id], caption_requests(t, windows[t.video_id], cfg.caption, system)):
                rnd.ask(t, r), targets.append(w)
        for w, res in zip(targets, (yield rnd)):
            w.caption = self._text(res)
        # round 2: summaries of caption groups (text); skipped when one group covers the video
        summaries: dict[str, list[str]] = {}
        rnd = Round("summarize", "teacher", "cost")
        for t in tasks:
            s_reqs, groups = summary_requests(t, windows[t.video_id], cfg.caption, system)
            if len(groups) <= 1:
                summaries[t.video_id] = [timestamped(windows[t.video_id])] if groups else []
                continue
            summaries[t.video_id] = []
            for r in s_reqs:
                rnd.ask(t, r)
        for t, res in zip(rnd.owners, (yield rnd)):
            if res.ok and res.texts:
                summaries[t.video_id].append(res.texts[0].strip())
        # round 3: whole-video description
        rnd = Round("describe", "teacher", "cost")
        for t in tasks:
            if summaries[t.video_id]:
                rnd.ask(t, describe_request(t, summaries[t.video_id], cfg.caption, system))
        descriptions: dict[str, str] = {}
        for t, res in zip(rnd.owners, (yield rnd)):
            if self._text(res):
                descriptions[t.video_id] = self._text(res)
        # round 4: QA writing from the timestamped captions (text only)
        qa_prompt = load_prompt("write_qa")
        rnd = Round("write_qa", "teacher", "cost")
        for t in tasks:
            if any(w.caption for w in windows[t.video_id]) and cfg.qa.items_per_video:
                rnd.ask(t, ChatRequest(
                    key=f"{t.video_id}/qa", system=system, json_mode=True, max_tokens=cfg.qa.max_tokens,
                    temperature=cfg.qa.temperature,
                    prompt=qa_prompt.render(duration=t.duration_s or 0.0, count=cfg.qa.items_per_video,
                                            captions=timestamped(windows[t.video_id]),
                                            description=descriptions.get(t.video_id, "(none)"))))
        replies = {t.video_id: res for t, res in zip(rnd.owners, (yield rnd))}
        for t in tasks:
            self._finish(t, windows[t.video_id], descriptions.get(t.video_id), replies.get(t.video_id))

    def _finish(self, task: VideoTask, windows: list[Window], description: str | None,
                reply: ChatResult | None) -> None:
        """Parse, filter and compose the items of one video; attach its output rows."""
        cfg, versions, duration = self.cfg, prompt_versions(), float(task.duration_s or 0.0)
        rejected: list[RejectedItem] = []
        teacher_items: list[QAItem] = []
        if reply is not None and not reply.ok:
            rejected.append(RejectedItem(ItemReason.teacher_failed, f"{reply.error_reason}: {reply.error_message}", None))
        elif reply is not None:
            parsed, error = parse_json_reply(reply.texts[0] if reply.texts else "")
            raw_items = parsed.get("items") if isinstance(parsed, dict) else parsed
            if error or not isinstance(raw_items, list):
                rejected.append(RejectedItem(ItemReason.unparseable, "teacher reply is not a JSON list of items",
                                             (reply.texts or [""])[0][:2000]))
                raw_items = []
            for raw in raw_items:
                checked = check_item(raw, duration, versions)
                (teacher_items if isinstance(checked, QAItem) else rejected).append(checked)
        composed = (grounding_items(windows, duration, cfg.qa.composed_grounding, cfg.qa.min_caption_words, versions)
                    + order_items(windows, cfg.qa.composed_order, cfg.qa.min_caption_words, versions))
        # composed items are distinct by construction (unique captions) and share the
        # evaluators' long template, so only the teacher's questions are de-duplicated
        teacher_items, dupes = drop_near_duplicates(teacher_items, cfg.qa.dedupe_threshold)
        rejected += dupes
        kept = composed + teacher_items
        # each video starts its A-B-C-D cycle at its own (stable) offset: few MC items per
        # video must not all land on A and B across the dataset
        balance_letters(kept, offset=zlib.crc32(task.video_id.encode()) % 4)
        for i, item in enumerate(kept):
            item.index = i
        if description:
            kept.append(QAItem(category="holistic", qa_type="summary", format="description",
                               question="Describe this video in detail.", answer=description,
                               evidence_start_s=0.0, evidence_end_s=duration, prompt_version=versions,
                               index=len(kept)))
        task.extra["teacher"] = self.model_name("teacher")
        task.extra["system_prompt"] = cfg.system_prompt
        task.extra["qa_items"] = kept
        task.extra["rejected_items"] = rejected
        task.extra["captions"] = [(w.start_s, w.end_s, w.caption) for w in windows if w.caption]
