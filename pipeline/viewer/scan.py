"""One streaming pass over a dataset's committed shards -> the numbers the report plots.

Shards are read as Arrow record batches of only the columns a plot needs (nested leaves by
their dotted path, so a QA row's long verifier answers and chat messages are never read);
counts are updated per batch with pyarrow.compute, and numeric columns are kept as NumPy
arrays (100K floats are 800 KB; the same values as Python objects would be ~30x that).
Only the few rows shown as examples become Python objects.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.store import DatasetStore

BATCH_ROWS = 65_536
EXAMPLES_PER_REASON = 3
LETTERS = "ABCDEFGH"
# the order a video goes through the stages; the funnel subtracts each stage's rejects in turn
FUNNEL = (("fetched", ("ingest", "fetch")), ("segmented", ("segment",)), ("selected", ("select",)),
          ("filtered", ("filter",)), ("deduped", ("dedupe",)))
VERIFIED_MARK = '"verification": {"verifier"'
SIGNALS = ("motion", "static_share", "black_share", "blank_share", "letterbox", "pillarbox", "text_score")


def iter_batches(store: DatasetStore, config: str, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Record batches of `columns` over every committed shard of `config`.

    A column a shard does not have (an older schema; `tokens` before it was written) is left
    out of that shard's batches rather than failing the report. Rows superseded by a newer
    commit and not yet rewritten (after a crash, until the next run) are left out."""
    for entry in store.state.of(config):
        drop = store.pending_ids(entry)
        with store.fs.open(store.path(entry.path), "rb") as fh:
            pf = pq.ParquetFile(fh)
            names = set(pf.schema_arrow.names)
            cols = [c for c in columns if c.split(".")[0] in names]
            if pf.metadata.num_rows == 0 or not cols:
                continue
            if drop is None:
                yield from pf.iter_batches(batch_size=BATCH_ROWS, columns=cols)
                continue
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=list(dict.fromkeys([*cols, "video_id"]))):
                batch = batch.filter(pc.invert(pc.is_in(batch.column("video_id"), value_set=drop)))
                yield batch if "video_id" in cols else batch.drop_columns(["video_id"])


class Values:
    """A growing float column: appended per batch, concatenated once."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []

    def add(self, arr: pa.Array | pa.ChunkedArray) -> None:
        arr = pc.drop_null(arr)
        if len(arr):
            self.parts.append(np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64))

    def array(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0)


def _count(arr: pa.Array) -> Counter:
    """value -> count of one column of a batch (nulls dropped)."""
    out: Counter = Counter()
    for item in pc.value_counts(pc.drop_null(arr)).to_pylist():
        out[item["values"]] += item["counts"]
    return out


def _struct_field(batch: pa.RecordBatch, path: str) -> pa.Array:
    top, _, leaf = path.partition(".")
    col = batch.column(batch.schema.get_field_index(top))
    return pc.struct_field(col, leaf) if leaf else col


@dataclass
class DatasetStats:
    """Everything the report's plots and tables show, computed in one pass."""

    videos: int = 0
    status: Counter = field(default_factory=Counter)
    video_rejects: Counter = field(default_factory=Counter)  # (stage, reason) -> videos
    video_examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    durations: Values = field(default_factory=Values)
    scenes: Values = field(default_factory=Values)
    signals: dict[str, Values] = field(default_factory=lambda: {s: Values() for s in SIGNALS})
    accepted_ids: list[pa.Array] = field(default_factory=list)
    sft_rows: int = 0
    qa_kinds: Counter = field(default_factory=Counter)  # (category, qa_type, format) -> items
    letters: Counter = field(default_factory=Counter)
    span_len: Values = field(default_factory=Values)
    span_pos: Values = field(default_factory=Values)  # span centre / video duration
    decisions: Counter = field(default_factory=Counter)
    pass_rates: dict[str, Values] = field(default_factory=dict)  # format -> verifier pass rates
    tokens: Values | None = None  # per-sample token counts, where the rows carry them
    rl_rows: int = 0
    rl_kinds: Counter = field(default_factory=Counter)
    distill_rows: int = 0
    qa_rejects: Counter = field(default_factory=Counter)  # reason -> items
    schema_rejects: Counter = field(default_factory=Counter)  # target config -> rows
    qa_examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def funnel(self) -> list[tuple[str, int]]:
        """Videos left after each stage, then QA items, then rows per training config."""
        return self.video_funnel() + self.qa_funnel()

    def video_funnel(self) -> list[tuple[str, int]]:
        steps = [("inputs", self.videos)]
        left = self.videos
        for name, stages in FUNNEL:
            left -= sum(n for (stage, _), n in self.video_rejects.items() if stage in stages)
            steps.append((name, left))
        steps.append(("accepted", self.status.get("accepted", 0)))
        return steps

    def qa_funnel(self) -> list[tuple[str, int]]:
        verified_reject = self.decisions.get("reject", 0)
        written = self.sft_rows + sum(self.qa_rejects.values())
        return [("QA written", written), ("QA passed checks", written - self.check_rejects()),
                  ("kept", self.decisions.get("keep", 0)), ("hard", self.decisions.get("hard", 0)),
                  ("verifier rejected", verified_reject),
                  ("sft", self.sft_rows), ("rl", self.rl_rows), ("distill", self.distill_rows)]

    def check_rejects(self) -> int:
        """QA items refused by the checks before verification (the rest were verified)."""
        return sum(self.qa_rejects.values()) - self.decisions.get("reject", 0)

    def accepted_video_ids(self) -> pa.Array:
        return pa.concat_arrays(self.accepted_ids) if self.accepted_ids else pa.array([], pa.string())


def scan(store: DatasetStore) -> DatasetStats:
    """Read the committed shards once and return the report's numbers."""
    stats = DatasetStats()
    _scan_videos(store, stats)
    _scan_sft(store, stats)
    _scan_rejects(store, stats)
    for batch in iter_batches(store, "rl", ["extra_info.reward_kind"]):
        stats.rl_rows += batch.num_rows
        stats.rl_kinds += _count(_struct_field(batch, "extra_info.reward_kind"))
    for path in store.shard_paths("distill"):
        stats.distill_rows += store.num_rows(path)
    stats.runs = store.runs()
    return stats


def _scan_videos(store: DatasetStore, stats: DatasetStats) -> None:
    cols = ["video_id", "status", "reject_reason", "reject_stage", "reject_message", "duration_s", "num_scenes",
            *(f"signals.{s}" for s in SIGNALS)]
    for batch in iter_batches(store, "videos", cols):
        stats.videos += batch.num_rows
        status = batch.column("status")
        stats.status += _count(status)
        accepted = pc.equal(status, "accepted")
        ok = batch.filter(accepted)
        stats.accepted_ids.append(ok.column("video_id"))
        stats.durations.add(ok.column("duration_s"))
        stats.scenes.add(ok.column("num_scenes"))
        if "signals" in ok.schema.names:
            for name in SIGNALS:
                stats.signals[name].add(_struct_field(ok, f"signals.{name}"))
        bad = batch.filter(pc.invert(accepted))
        if not bad.num_rows:
            continue
        pairs = pa.table({"stage": pc.fill_null(bad.column("reject_stage"), "?"),
                          "reason": pc.fill_null(bad.column("reject_reason"), "?")})
        for row in pairs.group_by(["stage", "reason"]).aggregate([([], "count_all")]).to_pylist():
            stats.video_rejects[(row["stage"], row["reason"])] += row["count_all"]
        _examples(stats.video_examples, bad.select(["video_id", "reject_reason", "reject_stage", "reject_message"]),
                  "reject_reason", lambda r: {"video_id": r["video_id"], "stage": r["reject_stage"],
                                              "message": r["reject_message"]})


def _examples(into: dict[str, list], table: pa.RecordBatch | pa.Table, key: str, shape) -> None:
    """Keep the first EXAMPLES_PER_REASON rows of each reason (only those become Python objects)."""
    keys = table.column(key)
    for reason in pc.unique(pc.drop_null(keys)).to_pylist():
        have = into.setdefault(reason, [])
        if len(have) >= EXAMPLES_PER_REASON:
            continue
        rows = table.filter(pc.equal(keys, reason)).slice(0, EXAMPLES_PER_REASON - len(have))
        have.extend(shape(r) for r in rows.to_pylist())


def _scan_sft(store: DatasetStore, stats: DatasetStats) -> None:
    cols = ["category", "qa_type", "format", "options", "answer", "evidence_start_s", "evidence_end_s",
            "duration_s", "verification.decision", "verification.pass_rate", "tokens"]
    for batch in iter_batches(store, "sft", cols):
        stats.sft_rows += batch.num_rows
        kinds = pa.table({c: batch.column(c) for c in ("category", "qa_type", "format")})
        for row in kinds.group_by(["category", "qa_type", "format"]).aggregate([([], "count_all")]).to_pylist():
            stats.qa_kinds[(row["category"], row["qa_type"], row["format"])] += row["count_all"]
        fmt = batch.column("format")
        mc = batch.filter(pc.equal(fmt, "multiple_choice"))
        if mc.num_rows:
            stats.letters += _answer_letters(mc.column("options"), mc.column("answer"))
        spans = batch.filter(pc.not_equal(fmt, "description"))
        start, end = spans.column("evidence_start_s"), spans.column("evidence_end_s")
        stats.span_len.add(pc.subtract(end, start))
        centre = pc.divide(pc.add(start, end), 2.0)
        stats.span_pos.add(pc.divide(centre, pc.max_element_wise(spans.column("duration_s"), 1e-9)))
        if "verification" in batch.schema.names:
            decision = _struct_field(batch, "verification.decision")
            stats.decisions += _count(decision)
            rate = _struct_field(batch, "verification.pass_rate")
            for name in pc.unique(fmt).to_pylist():
                stats.pass_rates.setdefault(name, Values()).add(pc.filter(rate, pc.equal(fmt, name)))
        if "tokens" in batch.schema.names:
            stats.tokens = stats.tokens or Values()
            stats.tokens.add(batch.column("tokens"))


def _answer_letters(options: pa.Array, answer: pa.Array) -> Counter:
    """Position of each answer among its options, columnar: flatten the option lists, compare
    each option with its row's answer, keep the first match per row."""
    flat = pc.list_flatten(options)
    if not len(flat):
        return Counter()
    parents = np.asarray(pc.list_parent_indices(options))
    offsets = np.asarray(options.offsets)  # a filtered batch's lists may not start at 0
    position = np.arange(len(flat)) + offsets[0] - offsets[parents]
    match = np.asarray(pc.fill_null(pc.equal(flat, pc.take(answer, pa.array(parents))), False))
    rows, pos = parents[match], position[match]
    _, first = np.unique(rows, return_index=True)  # row-major: the first match is the lowest position
    counts = np.bincount(pos[first], minlength=0)
    return Counter({(LETTERS[p] if p < len(LETTERS) else str(p)): int(n) for p, n in enumerate(counts) if n})


def _scan_rejects(store: DatasetStore, stats: DatasetStats) -> None:
    for batch in iter_batches(store, "rejects", ["target_config", "reason", "message", "video_id", "row_json"]):
        target = batch.column("target_config")
        stats.schema_rejects += _count(pc.filter(target, pc.not_equal(target, "qa")))
        qa = batch.filter(pc.equal(target, "qa"))
        stats.qa_rejects += _count(qa.column("reason"))
        # an item the verifier rejected is stored with its verification record (synth/publish.py);
        # one the checks refused holds the teacher's raw item
        stats.decisions["reject"] += pc.sum(pc.match_substring(qa.column("row_json"), VERIFIED_MARK)).as_py() or 0
        _examples(stats.qa_examples, qa, "reason", _qa_example)


def _qa_example(row: dict[str, Any]) -> dict[str, Any]:
    try:
        raw = json.loads(row["row_json"])
    except ValueError:
        raw = {}
    raw = raw if isinstance(raw, dict) else {"raw": raw}
    return {"video_id": row["video_id"], "message": row["message"], "question": str(raw.get("question", ""))[:300],
            "answer": str(raw.get("answer", ""))[:200]}
