"""Verified items -> rows of `sft`, `rl`, `distill` and `rejects`, by the configured policy.

- sft: every item whose decision is keep or hard (all items when no verifier ran);
- rl: grounding and multiple-choice items (composed ones always qualify; teacher ones
  once verified) whose verifier pass rate lies in [rl_min_pass_rate, rl_max_pass_rate]:
  trivially easy and impossible items teach RL nothing. difficulty = 1 - pass rate;
- distill: items the verifier gets wrong or incompletely (mean score below
  distill_max_score) paired with the teacher's answer;
- rejects: items refused by the checks or by verification, with the reason.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pipeline.records import VideoTask
from synth.config import VerifyPolicy
from synth.items import QAItem
from synth.rows import qa_fields, reject_row, rl_row, sft_messages, sft_row


def _rl_eligible(item: QAItem, verified: bool) -> bool:
    return item.format in ("grounding", "multiple_choice") and (item.verifiable or item.format == "multiple_choice"
                                                                 or verified)


def publish_rows(task: VideoTask, policy: VerifyPolicy) -> dict[str, list[dict[str, Any]]]:
    synthesis = task.synthesis
    rows: dict[str, list[dict[str, Any]]] = {"sft": [], "rl": [], "distill": [], "rejects": []}
    if synthesis is None:
        return rows
    teacher, system = synthesis.teacher, synthesis.system_prompt
    rows["rejects"] += [reject_row(task, r.reason, r.message, r.raw) for r in synthesis.rejected]
    for item in synthesis.items:
        v = item.verification
        record = asdict(v) if v is not None else None
        if v is not None and v.decision == "reject":
            rows["rejects"].append(reject_row(
                task, v.reason, f"verifier {v.verifier}: pass rate {v.pass_rate}, score {v.score}",
                {**qa_fields(task, item, teacher), "verification": record}))
            continue
        sft = sft_row(task, item, teacher, system)
        sft["verifier"] = v.verifier if v else None
        sft["verification"] = record
        rows["sft"].append(sft)
        if _rl_eligible(item, v is not None):
            if v is None:
                row = rl_row(task, item)
            elif policy.rl_min_pass_rate <= v.pass_rate <= policy.rl_max_pass_rate:
                row = rl_row(task, item, difficulty=round(1.0 - v.pass_rate, 4))
            else:
                row = None
            if row is not None:
                rows["rl"].append(row)
        if v is not None and v.answers and v.score < policy.distill_max_score:
            rows["distill"].append({**qa_fields(task, item, teacher), "verifier": v.verifier, "verification": record,
                                    "student_answer": v.answers[0],
                                    "messages": sft_messages(task, item, system)})
    return rows
