"""The report's plots as plotly figures (JSON for plotly.js, which ships beside the page).

Why plotly: its Python package is well kept, bundles plotly.min.js (so the report needs no
network and no CDN), and every plot a curator reads here (funnel, histograms, sunburst,
heatmaps, time series) is a built-in trace with hover and zoom. Distributions are binned
here with NumPy and drawn as bars, so the page embeds ~40 numbers per histogram, not one per row.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pipeline.viewer.scan import SIGNALS, DatasetStats

BINS = 40
HEIGHT = 320


def _layout(fig: go.Figure, title: str, **kw: Any) -> go.Figure:
    kw.setdefault("height", HEIGHT)
    fig.update_layout(title=title, margin=dict(l=50, r=20, t=50, b=40), template="plotly_white", **kw)
    return fig


def _hist(values: np.ndarray, bins: int = BINS, range_: tuple[float, float] | None = None) -> dict[str, list]:
    """Bin centres, counts and widths for a bar trace."""
    if not len(values):
        return {"x": [], "y": [], "width": []}
    counts, edges = np.histogram(values, bins=bins, range=range_)
    return {"x": ((edges[:-1] + edges[1:]) / 2).round(4).tolist(), "y": counts.tolist(),
            "width": np.diff(edges).round(4).tolist()}


def _bar_hist(values: np.ndarray, title: str, xlabel: str, **kw: Any) -> go.Figure:
    fig = go.Figure(go.Bar(**_hist(values, **kw), marker_line_width=0))
    return _layout(fig, f"{title} (n={len(values)})", xaxis_title=xlabel, yaxis_title="count", bargap=0)


def _funnel(steps: list[tuple[str, int]], title: str, color: str, share: str) -> go.Figure:
    fig = go.Figure(go.Funnel(y=[s for s, _ in steps], x=[n for _, n in steps], textinfo=f"value+percent {share}",
                              marker_color=color))
    return _layout(fig, title, height=420)


def video_funnel(stats: DatasetStats) -> go.Figure:
    return _funnel(stats.video_funnel(), "Videos: inputs to accepted", "#264653", "previous")


def qa_funnel(stats: DatasetStats) -> go.Figure:
    return _funnel(stats.qa_funnel(), "QA items: written to training rows",
                   "#2a9d8f", "initial")


def durations(stats: DatasetStats) -> go.Figure:
    return _bar_hist(stats.durations.array() / 60.0, "Accepted video durations", "minutes")


def scenes(stats: DatasetStats) -> go.Figure:
    return _bar_hist(stats.scenes.array(), "Scenes per accepted video", "scenes")


def signals(stats: DatasetStats) -> go.Figure:
    fig = make_subplots(rows=2, cols=4, subplot_titles=SIGNALS)
    for i, name in enumerate(SIGNALS):
        values = stats.signals[name].array()
        fig.add_trace(go.Bar(**_hist(values, bins=30), name=name, marker_line_width=0), row=i // 4 + 1,
                      col=i % 4 + 1)
    return _layout(fig, "Content signals of accepted videos", showlegend=False, height=460, bargap=0)


def qa_kinds(stats: DatasetStats) -> go.Figure:
    """Category -> question type -> format, as a sunburst (area = items)."""
    ids, labels, parents, values = [], [], [], []
    totals: dict[tuple, int] = {}
    for (cat, typ, fmt), n in stats.qa_kinds.items():
        for key in ((cat,), (cat, typ), (cat, typ, fmt)):
            totals[key] = totals.get(key, 0) + n
    for key, n in sorted(totals.items()):
        ids.append("/".join(key))
        labels.append(key[-1])
        parents.append("/".join(key[:-1]))
        values.append(n)
    fig = go.Figure(go.Sunburst(ids=ids, labels=labels, parents=parents, values=values, branchvalues="total"))
    return _layout(fig, f"QA by category, type and format (n={stats.sft_rows})", height=460)


def category_format(stats: DatasetStats) -> go.Figure:
    cats = sorted({c for c, _, _ in stats.qa_kinds})
    fmts = sorted({f for _, _, f in stats.qa_kinds})
    z = [[sum(n for (c, _, f), n in stats.qa_kinds.items() if c == cat and f == fmt) for fmt in fmts] for cat in cats]
    fig = go.Figure(go.Heatmap(z=z, x=fmts, y=cats, colorscale="Blues", texttemplate="%{z}"))
    return _layout(fig, "Kept items: category x format")


def letters(stats: DatasetStats) -> go.Figure:
    keys = sorted(set(stats.letters) | set("ABCD"))
    fig = go.Figure(go.Bar(x=keys, y=[stats.letters.get(k, 0) for k in keys]))
    return _layout(fig, "Multiple-choice answer letters (a skew teaches position bias)", yaxis_title="items")


def span_lengths(stats: DatasetStats) -> go.Figure:
    return _bar_hist(stats.span_len.array(), "Evidence-span lengths", "seconds")


def span_positions(stats: DatasetStats) -> go.Figure:
    return _bar_hist(stats.span_pos.array(), "Evidence-span centre, as a share of the video", "position (0 = start, 1 = end)",
                     bins=20, range_=(0.0, 1.0))


def pass_rates(stats: DatasetStats) -> go.Figure:
    fig = go.Figure()
    for fmt, values in sorted(stats.pass_rates.items()):
        arr = values.array()
        fig.add_trace(go.Bar(name=f"{fmt} (n={len(arr)})", **_hist(arr, bins=11, range_=(-0.05, 1.05))))
    return _layout(fig, "Verifier pass rate of kept items, per format", xaxis_title="pass rate",
                   yaxis_title="items", barmode="group")


def decisions(stats: DatasetStats) -> go.Figure:
    keys = ["keep", "hard", "reject"] + sorted(set(stats.decisions) - {"keep", "hard", "reject"})
    fig = go.Figure(go.Bar(x=keys, y=[stats.decisions.get(k, 0) for k in keys], marker_color=["#2a9d8f", "#e9c46a", "#e76f51"]
                           + ["#999"] * (len(keys) - 3)))
    return _layout(fig, "Verification decisions (reject: stored in rejects)", yaxis_title="items")


def tokens(stats: DatasetStats, cap: int | None) -> go.Figure | None:
    """Tokens per sample against the trainer's cap; None when the rows carry no token count."""
    if stats.tokens is None:
        return None
    values = stats.tokens.array()
    fig = _bar_hist(values, "Tokens per sample", "tokens")
    if cap:
        over = int((values > cap).sum())
        fig.add_vline(x=cap, line_color="red", line_dash="dash", annotation_text=f"cap {cap}: {over} over")
    return fig


def video_rejects(stats: DatasetStats) -> go.Figure:
    fig = go.Figure()
    reasons = sorted({r for _, r in stats.video_rejects})
    for stage in sorted({s for s, _ in stats.video_rejects}):
        fig.add_trace(go.Bar(name=stage, x=reasons, y=[stats.video_rejects.get((stage, r), 0) for r in reasons]))
    return _layout(fig, "Rejected videos by reason, coloured by stage", barmode="stack", yaxis_title="videos")


def qa_rejects(stats: DatasetStats) -> go.Figure:
    items = stats.qa_rejects.most_common()
    fig = go.Figure(go.Bar(x=[r for r, _ in items], y=[n for _, n in items], marker_color="#e76f51"))
    return _layout(fig, "Rejected QA items by reason (checks and verification)", yaxis_title="items")


def runs(stats: DatasetStats) -> go.Figure:
    """Per run: throughput, tokens per kept item, cache reuse (from `_runs/*.json`)."""
    xs, rate, per_item, reuse, labels = [], [], [], [], []
    for run in stats.runs:
        try:
            xs.append(datetime.fromisoformat(str(run["started_at"]).replace("Z", "+00:00")).isoformat())
        except (KeyError, ValueError):
            continue
        labels.append(run.get("run_id", ""))
        wall = float(run.get("wall_s") or 0.0)
        rate.append(round(run.get("processed", 0) / wall * 3600.0, 1) if wall > 0 else None)
        cost = run.get("cost") or {}
        kept = run.get("qa_kept") or 0
        tokens = sum(c.get("total", {}).get(k, 0) for c in cost.values() for k in ("prompt_tokens", "output_tokens"))
        per_item.append(round(tokens / kept, 1) if kept else None)
        sent = sum(c.get("total", {}).get("requests", 0) for c in cost.values())
        cached = sum(c.get("total", {}).get("cached_requests", 0) for c in cost.values())
        reuse.append(round(cached / (sent + cached), 3) if sent + cached else None)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("videos processed per hour", "tokens per kept QA item",
                                                        "model requests served from the cache"))
    for col, ys in enumerate((rate, per_item, reuse), start=1):
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", text=labels), row=1, col=col)
    return _layout(fig, f"Runs over time ({len(xs)} runs)", showlegend=False)


QA_PLOTS = ("qa_funnel", "qa_kinds", "category_format", "letters", "span_lengths", "span_positions", "pass_rates",
            "decisions", "qa_rejects")
NO_TOKENS = ("No per-sample token counts: the sft rows carry no `tokens` field (the exports' token accounting "
             "writes it); nothing is estimated here.")
NO_QA = "No QA items in this dataset (no teacher configured, or none written yet)."


def all_figures(stats: DatasetStats, token_cap: int | None) -> tuple[dict[str, go.Figure | None], dict[str, str]]:
    """Plot id -> figure, and plot id -> why it is absent (None: the data for it is not there)."""
    figures = {"video_funnel": video_funnel(stats), "qa_funnel": qa_funnel(stats), "durations": durations(stats),
               "scenes": scenes(stats), "signals": signals(stats), "qa_kinds": qa_kinds(stats),
               "category_format": category_format(stats), "letters": letters(stats),
               "span_lengths": span_lengths(stats), "span_positions": span_positions(stats),
               "pass_rates": pass_rates(stats), "decisions": decisions(stats), "tokens": tokens(stats, token_cap),
               "video_rejects": video_rejects(stats), "qa_rejects": qa_rejects(stats), "runs": runs(stats)}
    absent = {"tokens": NO_TOKENS}
    if not stats.sft_rows and not stats.qa_rejects:
        figures.update({k: None for k in QA_PLOTS + ("tokens",)})
        absent.update({k: NO_QA for k in QA_PLOTS + ("tokens",)})
    return figures, absent
