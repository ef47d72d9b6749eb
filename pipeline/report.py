"""Balance and quality of the QA data: what a curator checks before training on it.

Counts per category, type and format; the answer-letter distribution of multiple-choice
items (a skew teaches position bias); evidence-span lengths; verifier pass rates and
decisions; RL reward kinds; rejects by reason. Read from the committed data, so it is
the same whether printed after a run, by `curate status`, or in the dataset card.
"""
from __future__ import annotations

import math
import statistics
from array import array
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.store import DatasetStore

LETTERS = "ABCD"


def quality_report(store: DatasetStore) -> dict[str, Any]:
    """Streamed over the store's record batches: counters and numbers, never the rows. What grows with
    the dataset: 8 bytes per sft row (evidence spans, for the median), 8 per verified row (pass rates)
    and the token report's (`token_report`): ~70 bytes an sft row held; bench/scale_memory.py measures
    ~2.3 KB of RSS a video at 10 sft rows a video, allocator included."""
    counts = {k: Counter() for k in ("category", "qa_type", "format", "decision", "reward_kind", "rejects")}
    letters: Counter = Counter()
    spans = array("d")
    pass_rates: dict[str, array] = {}
    rows = 0
    columns = ["category", "qa_type", "format", "options", "answer", "evidence_start_s", "evidence_end_s",
               "verification.decision", "verification.pass_rate"]
    for batch in (store.iter_batches("sft", columns) if store.shard_paths("sft") else ()):
        rows += batch.num_rows
        for key in ("category", "qa_type", "format"):
            _count(counts[key], batch.column(key))
        fmt = batch.column("format")
        mc = batch.filter(pc.equal(fmt, "multiple_choice"))
        for options, answer in zip(mc.column("options").to_pylist(), mc.column("answer").to_pylist()):
            if answer in options:
                letters[LETTERS[options.index(answer)]] += 1
        spanned = batch.filter(pc.not_equal(fmt, "description"))
        spans.extend(pc.subtract(spanned.column("evidence_end_s"), spanned.column("evidence_start_s")).to_numpy(
            zero_copy_only=False).tolist())
        verified = batch.filter(pc.is_valid(batch.column("decision")))
        _count(counts["decision"], verified.column("decision"))
        for name, rate in zip(verified.column("format").to_pylist(), verified.column("pass_rate").to_pylist()):
            pass_rates.setdefault(name, array("d")).append(rate)
    for batch in store.iter_batches("rl", ["extra_info.reward_kind"]):
        _count(counts["reward_kind"], batch.column(0))
    for batch in store.iter_batches("rejects", ["target_config", "reason"]):
        _count(counts["rejects"], pc.binary_join_element_wise(batch.column("target_config"), batch.column("reason"), ":"))
    return {
        "sft_rows": rows,
        "category": dict(counts["category"].most_common()),
        "type": dict(counts["qa_type"].most_common()),
        "format": dict(counts["format"].most_common()),
        "answer_letters": {k: letters.get(k, 0) for k in LETTERS},
        "evidence_span_s": ({"mean": round(math.fsum(spans) / len(spans), 2), "median": round(_median(spans), 2),
                             "max": round(max(spans), 2)} if spans else {}),
        "verified": sum(counts["decision"].values()),
        "decisions": dict(counts["decision"]),
        "mean_pass_rate_by_format": {k: round(math.fsum(v) / len(v), 3) for k, v in sorted(pass_rates.items())},
        "rl_reward_kinds": dict(counts["reward_kind"]),
        "rejects": dict(counts["rejects"].most_common()),
        "tokens": token_report(store),
    }


def _count(counter: Counter, column: pa.Array) -> None:
    """Add a batch's values to `counter` in the order they first appear (as Counter(rows) would)."""
    for item in pc.value_counts(column).to_pylist():
        counter[item["values"]] += item["counts"]


def _median(values: array) -> float:
    """statistics.median of a typed array, sorted by numpy instead of as a list of Python floats."""
    v = np.sort(np.frombuffer(values, np.float64))
    n = len(v)
    return float(v[n // 2]) if n % 2 else float((v[n // 2 - 1] + v[n // 2]) / 2)


def token_report(store: DatasetStore) -> dict[str, Any]:
    """Tokens per sft sample the SFT trainer's way (pipeline.budget), grouped as the xtuner export groups;
    the messages are read a batch at a time and kept as `XtunerSamples` (32 bytes a sample)."""
    from pipeline.budget import XtunerSamples, XtunerSettings, xtuner_token_report

    groups: dict[str, XtunerSamples] = {}
    base = XtunerSettings()
    for batch in (store.iter_batches("sft", ["category", "messages"]) if store.shard_paths("sft") else ()):
        for category, messages in zip(batch.column("category").to_pylist(), batch.column("messages").to_pylist()):
            if category not in groups:
                groups[category] = XtunerSamples(base, base.max_length)
            groups[category].add(messages)
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
    where a filter bound falls before setting it. Read as leaf columns a batch at a time (the
    signature points never leave Arrow): 8 bytes per video per signal (64 a video), then one
    signal at a time as a list for `statistics`."""
    columns = ["status", "signals.motion"] + [f"signals.{name}" for name in SIGNALS if name != "motion"]
    every: dict[str, list[np.ndarray]] = {name: [] for name in SIGNALS}
    accepted: list[np.ndarray] = []
    for batch in store.iter_batches("videos", columns):
        measured = batch.filter(pc.is_valid(batch.column("motion")))  # a null struct reads as null leaves
        accepted.append(pc.equal(measured.column("status"), "accepted").to_numpy(zero_copy_only=False))
        for name in SIGNALS:
            every[name].append(pc.cast(measured.column(name), pa.float64()).to_numpy(zero_copy_only=False))
    kept = np.concatenate(accepted) if accepted else np.zeros(0, bool)
    out: dict[str, Any] = {"videos": len(kept), "accepted": int(kept.sum()), "signals": {}}
    for name in SIGNALS:
        values = np.concatenate(every.pop(name)) if accepted else np.zeros(0)
        out["signals"][name] = {"accepted": _quantiles(values[kept].tolist()), "all": _quantiles(values.tolist())}
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
