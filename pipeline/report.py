"""Balance and quality of the QA data: what a curator checks before training on it.

Counts per category, type and format; the answer-letter distribution of multiple-choice
items (a skew teaches position bias); evidence-span lengths; verifier pass rates and
decisions; RL reward kinds; rejects by reason. Read from the committed data, so it is
the same whether printed after a run, by `curate status`, or in the dataset card.
"""
from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from pipeline.store import DatasetStore

LETTERS = "ABCD"


def quality_report(store: DatasetStore) -> dict[str, Any]:
    sft = store.read_table("sft", ["category", "qa_type", "format", "options", "answer", "evidence_start_s",
                                   "evidence_end_s"]).to_pylist()
    # only two leaves of the verification record: its answers can be long, at 1M rows that matters
    checks = (store.read_table("sft", ["verification.decision", "verification.pass_rate"]).to_pylist()
              if store.shard_paths("sft") else [])
    for row, check in zip(sft, checks):
        row["verification"] = check if check.get("decision") is not None else None
    rl = store.read_table("rl", ["extra_info"]).to_pylist()
    rejects = store.read_table("rejects", ["target_config", "reason"]).to_pylist()
    letters = Counter(LETTERS[r["options"].index(r["answer"])] for r in sft
                      if r["format"] == "multiple_choice" and r["answer"] in r["options"])
    spans = [r["evidence_end_s"] - r["evidence_start_s"] for r in sft if r["format"] != "description"]
    verified = [r["verification"] for r in sft if r["verification"]]
    by_format: dict[str, list[float]] = {}
    for r in sft:
        if r["verification"]:
            by_format.setdefault(r["format"], []).append(r["verification"]["pass_rate"])
    return {
        "sft_rows": len(sft),
        "category": dict(Counter(r["category"] for r in sft).most_common()),
        "type": dict(Counter(r["qa_type"] for r in sft).most_common()),
        "format": dict(Counter(r["format"] for r in sft).most_common()),
        "answer_letters": {k: letters.get(k, 0) for k in LETTERS},
        "evidence_span_s": ({"mean": round(statistics.fmean(spans), 2), "median": round(statistics.median(spans), 2),
                             "max": round(max(spans), 2)} if spans else {}),
        "verified": len(verified),
        "decisions": dict(Counter(v["decision"] for v in verified)),
        "mean_pass_rate_by_format": {k: round(statistics.fmean(v), 3) for k, v in sorted(by_format.items())},
        "rl_reward_kinds": dict(Counter(r["extra_info"]["reward_kind"] for r in rl)),
        "rejects": dict(Counter(f"{r['target_config']}:{r['reason']}" for r in rejects).most_common()),
        "tokens": token_report(store),
    }


def token_report(store: DatasetStore) -> dict[str, Any]:
    """Tokens per sft sample the SFT trainer's way (pipeline.budget), grouped as the xtuner export groups."""
    from pipeline.budget import xtuner_token_report

    rows = store.read_table("sft", ["category", "messages"]).to_pylist() if store.shard_paths("sft") else []
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(r["category"], []).append(r["messages"])
    return xtuner_token_report(groups)


def render_text(report: dict[str, Any]) -> str:
    if not report["sft_rows"] and not report["rejects"]:
        return "QA data: none yet"
    lines = [f"QA data: {report['sft_rows']} sft rows"]
    for key in ("category", "format", "type", "answer_letters", "evidence_span_s", "decisions",
                "mean_pass_rate_by_format", "rl_reward_kinds", "rejects"):
        if report.get(key):
            lines.append(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in report[key].items()))
    if report.get("tokens"):
        from pipeline.budget import render_token_report

        lines.append("  " + render_token_report(report["tokens"]))
    return "\n".join(lines)


def render_markdown(report: dict[str, Any]) -> str:
    lines = ["## QA balance and quality", ""]
    for key, title in (("category", "category"), ("type", "question type"), ("format", "format"),
                       ("answer_letters", "multiple-choice answer letter"), ("decisions", "verification decision"),
                       ("mean_pass_rate_by_format", "mean verifier pass rate"), ("rl_reward_kinds", "RL reward kind"),
                       ("rejects", "rejects (config:reason)")):
        if report.get(key):
            lines += [f"| {title} | count |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in report[key].items()] + [""]
    if report.get("evidence_span_s"):
        s = report["evidence_span_s"]
        lines.append(f"Evidence spans: mean {s['mean']} s, median {s['median']} s, max {s['max']} s.")
    if report.get("tokens"):
        t = report["tokens"]
        lines += ["", f"Tokens per SFT sample as InternVideo3's trainer counts them (long config, cap {t['cap']}; "
                      f"text: {t['text']}):", "", "| settings | samples | min | median | p95 | max | over the cap |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for key, title in (("exported", "`curate export xtuner` (budgeted)"), ("unbudgeted", "config defaults")):
            d = t[key]
            if d:
                lines.append(f"| {title} | {d['samples']} | {d['min']} | {d['median']} | {d['p95']} | {d['max']} | "
                             f"{t[key + '_over_cap']} |")
        if t.get("frames"):
            lines.append(f"\nExported frames per sample {t['frames']['min']}-{t['frames']['max']}; smallest frame "
                         f"{t['smallest_frame_wh'][0]}x{t['smallest_frame_wh'][1]}.")
    return "\n".join(lines)


SIGNALS = ("motion", "motion_p90", "static_share", "black_share", "blank_share", "letterbox", "pillarbox",
           "text_score")


def signal_distributions(store: DatasetStore) -> dict[str, Any]:
    """Quantiles of every content signal over the committed videos that were segmented:
    accepted ones, and all of them (the rejected-by-filter ones included), so a curator can see
    where a filter bound falls before setting it."""
    rows = store.read_table("videos", ["status", "signals"]).to_pylist()
    measured = [r for r in rows if r["signals"]]
    out: dict[str, Any] = {"videos": len(measured),
                           "accepted": sum(r["status"] == "accepted" for r in measured), "signals": {}}
    for name in SIGNALS:
        every = [float(r["signals"][name]) for r in measured]
        kept = [float(r["signals"][name]) for r in measured if r["status"] == "accepted"]
        out["signals"][name] = {"accepted": _quantiles(kept), "all": _quantiles(every)}
    return out


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    q = statistics.quantiles(values, n=10, method="inclusive") if len(values) > 1 else [values[0]] * 9
    return {"p10": round(q[0], 4), "p50": round(statistics.median(values), 4), "p90": round(q[8], 4),
            "mean": round(statistics.fmean(values), 4)}


def render_signal_markdown(dist: dict[str, Any]) -> str:
    if not dist.get("videos"):
        return ""
    lines = ["## Content signals", "",
             f"Measured in the segment decode of {dist['videos']} videos ({dist['accepted']} accepted); "
             "`videos.signals` holds them per video, with the filters' bounds in the job config.", "",
             "| signal | accepted p10 | p50 | p90 | mean | all p10 | p50 | p90 |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, d in dist["signals"].items():
        a, e = d["accepted"], d["all"]
        lines.append(f"| {name} | {a.get('p10', '')} | {a.get('p50', '')} | {a.get('p90', '')} | {a.get('mean', '')} "
                     f"| {e.get('p10', '')} | {e.get('p50', '')} | {e.get('p90', '')} |")
    return "\n".join(lines)


def render_signal_text(dist: dict[str, Any]) -> str:
    if not dist.get("videos"):
        return "content signals: none measured yet"
    parts = [f"{name} {d['accepted'].get('p50', '-')}" for name, d in dist["signals"].items()]
    return f"content signals (median of {dist['accepted']} accepted): " + ", ".join(parts)
