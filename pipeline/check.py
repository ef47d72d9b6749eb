"""`curate check OUT`: the trainers' and evaluators' rules, run over a finished dataset.

Each rule is written here from the consumers' contracts (DESIGN.md), not from the code
that produced the rows, so a producer's mistake shows up as a violation instead of being
repeated: the RL prompt is matched against the evaluators' literal template, spans are
parsed out of the text the trainer sees, videos are decoded in full by decord (the SFT
trainer's reader), and ambiguity is judged from the stored captions with a word-coverage
rule of its own.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.store import DatasetStore

RULES = {
    "xtuner_line": "every sft row exports to an xtuner line the trainer accepts (format rules)",
    "trainer_decode": "every video decodes in full with decord: frames >= origin_video_length, each of size "
                      "image_wh, the last one where origin_fps puts it",
    "rl_prompt": "every RL prompt is the evaluators' template of its reward kind",
    "span_in_video": "every span (stored, in the answer text, in the RL ground truth) lies inside the video",
    "sft_rl_agree": "an item's SFT answer and its RL ground truth are the same numbers",
    "blind_kept": "no sft or rl item is answerable without the video (verification.blind_answerable)",
    "ambiguous": "no grounding or time-order answer that another captioned window satisfies as well",
    "token_budget": "no SFT sample the trainer would truncate or discard: tokens counted the xtuner fork's way "
                    "(its frame sampler, resize, 2-frame patches, 2x2 merge, timestamps, template) within the cap, "
                    "under the export's meta.json settings (--xtuner DEST) or the ones it would write",
    "verl_prompt": "every verl row's prompt (video under its entry's limits) within max_prompt_length (--verl DEST)",
}
# DESIGN.md, "Grounding prompt used by the evaluators", literally
_GROUNDING = re.compile(r'^<video>\nGiven the video of duration (\d+\.\d) seconds, find the start and end '
                        r'timestamps \(in seconds\) of the moment that best matches the following description: '
                        r'"(.+)"$', re.DOTALL)
_MC = re.compile(r"^<video>\n(.+)\nA\. (.+)\nB\. (.+)\nC\. (.+)\nD\. (.+)\nAnswer with the option letter only\.$",
                 re.DOTALL)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_SAYS_WHEN = re.compile(r"\d+(?:\.\d+)?\s*(?:s|sec|secs|seconds?|min|minutes?)\b|\b\d{1,2}:\d{2}\b", re.IGNORECASE)
_WORDS = re.compile(r"[a-z0-9]+")
_COMMON = frozenset("a an the and or of in on at to with over under from by for is are was were be its it this "
                    "that there their his her they he she as into onto while then".split())


@dataclass
class CheckReport:
    checked: Counter = field(default_factory=Counter)
    violations: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def fail(self, rule: str, what: str) -> None:
        self.violations[rule] += 1
        if len(self.examples[rule]) < 5:
            self.examples[rule].append(what)

    def render(self) -> str:
        lines = [f"{'rule':<16} {'checked':>8} {'violations':>10}  meaning"]
        for rule, meaning in RULES.items():
            lines.append(f"{rule:<16} {self.checked[rule]:>8} {self.violations[rule]:>10}  {meaning}")
            lines += [f"    e.g. {e}" for e in self.examples.get(rule, [])]
        total = sum(self.violations.values())
        lines.append(f"{total} violation(s)" if total else "ok: 0 violations")
        return "\n".join(lines)


@lru_cache(maxsize=8192)
def _words(text: str) -> frozenset[str]:
    """Content words, cached: a grounding row's description is held against each caption of its video,
    and a video's captions against each of its rows."""
    return frozenset(w for w in _WORDS.findall((text or "").lower()) if w not in _COMMON and len(w) > 1)


def _coverage(query: str, caption: str) -> float:
    q = _words(query)
    return len(q & _words(caption)) / len(q) if q else 0.0


def _span_numbers(text: str) -> list[float]:
    return [float(x) for x in _NUMBER.findall(text or "")[:2]]


_SFT_COLUMNS = ["id", "video_id", "category", "qa_type", "format", "question", "answer", "options", "evidence_start_s",
                "evidence_end_s", "duration_s", "messages", "media_store", "media_uri", "verification.blind_answerable"]
_CAPTIONED = ["id", "video_id", "qa_type", "format", "question", "answer", "options", "evidence_start_s",
              "evidence_end_s"]  # what the ambiguity rule reads of an sft row


def check_dataset(out: str, *, media_root: str | None = None, decode: bool = True,
                  max_videos: int | None = None, xtuner: str | None = None, verl: str | None = None,
                  max_tokens: int = 262144, max_prompt_length: int = 16384, patch_size: int = 14) -> CheckReport:
    """Run every rule over the dataset at `out` (and over exports of it, where given).

    Streamed over the store's record batches; the rules that join (an RL row with its SFT row, a
    grounding or time-order row with its video's captions) join a batch against a columnar lookup.
    What grows with the dataset, in Arrow or typed arrays, never as rows: per sft row with an RL twin
    ~50 bytes (id, answer span, blind flag), per grounding / time-order sft row its question and
    options (~0.3 KB), per sft row 32 bytes for the token rule (`XtunerSamples`) and its id, per
    video one decode result: ~2 KB a video at 10 sft rows a video."""
    from pipeline.budget import XtunerSamples, XtunerSettings
    from pipeline.export import check_xtuner, default_media_root, store_rows, to_xtuner

    store = DatasetStore(out)
    report = CheckReport()
    has_sft = bool(store.shard_paths("sft"))
    root = media_root or (default_media_root(store_rows(store, "sft", ["media_store", "video_path"]))
                          if has_sft else "/")
    rl_ids = pa.concat_arrays([b.column(0) for b in store.iter_batches("rl", ["extra_info.id"])] or
                              [pa.array([], pa.string())])
    twins: list[pa.Table] = []  # sft rows that have an RL row: id, answer span, blind flag
    captioned: list[pa.Table] = []  # grounding and time-order rows, with their place in the sft stream
    tokens: dict[str, XtunerSamples] = {}
    token_ids: dict[str, list[pa.Array]] = {}
    decoded: dict[str, Any] = {}
    seen = 0
    for batch in (store.iter_batches("sft", _SFT_COLUMNS) if has_sft else ()):
        rows = batch.to_pylist()
        for row in rows:
            report.checked["xtuner_line"] += 1
            line = to_xtuner(row, root)
            problems = check_xtuner(line, root)  # format rules only; the media is decoded below
            if problems:
                report.fail("xtuner_line", f"{row['id']}: {problems[0]}")
            _check_spans(report, row["id"], row["duration_s"], [(row["evidence_start_s"], row["evidence_end_s"])]
                         + ([tuple(_span_numbers(row["answer"]))] if row["format"] == "grounding" else []))
            _check_blind(report, row["id"], {"blind_answerable": row["blind_answerable"]})
            if decode and (max_videos is None or len(decoded) < max_videos or row["video_id"] in decoded):
                video = line["messages"][-2]["content"][0]["video_url"] if not problems else None
                if video is not None:
                    key = video["url"]
                    if key not in decoded:
                        decoded[key] = full_decode(os.path.join(root, key), row.get("media_uri"))
                    _check_decode(report, row["id"], video, decoded[key])
            if not xtuner:
                if row["category"] not in tokens:
                    tokens[row["category"]] = XtunerSamples(XtunerSettings(max_length=max_tokens), max_tokens)
                    token_ids[row["category"]] = []
                tokens[row["category"]].add(row["messages"])
        if not xtuner:
            for category in tokens:
                token_ids[category].append(batch.column("id").filter(pc.equal(batch.column("category"), category)))
        twin = pc.is_in(batch.column("id"), value_set=rl_ids)
        spans = [_span_numbers(r["answer"]) for r, t in zip(rows, twin.to_pylist()) if t]
        twins.append(pa.table({"id": batch.column("id").filter(twin), "span": pa.array(spans, pa.list_(pa.float64())),
                               "blind": batch.column("blind_answerable").filter(twin)}))
        fmt = batch.column("format")
        time_order = pc.and_(pc.equal(batch.column("qa_type"), "time_order"), pc.equal(fmt, "multiple_choice"))
        wanted = pc.or_(pc.equal(fmt, "grounding"), time_order)
        part = pa.Table.from_batches([batch.select(_CAPTIONED)]).append_column(
            "at", pa.array(np.arange(seen, seen + batch.num_rows)))
        captioned.append(part.filter(wanted))
        seen += batch.num_rows
        del rows
    _check_ambiguity(report, store, captioned)
    del captioned
    twin_table = pa.concat_tables(twins) if twins else pa.table({"id": pa.array([], pa.string())})
    twin_table = twin_table.take(np.arange(len(twin_table) - 1, -1, -1))  # a repeated id: its last row, as a dict
    del twins
    answers: dict[str, list[int]] = {}  # sft id -> the sft_rl_agree examples that quote its answer
    for batch in store.iter_batches("rl", ["extra_info", "prompt", "reward_model"]):
        infos = batch.column("extra_info").to_pylist()
        at = pc.index_in(pa.array([i["id"] for i in infos], pa.string()), value_set=twin_table["id"])
        matched = twin_table.take(at).to_pylist() if len(twin_table) else [{"id": None}] * len(infos)
        for info, prompt_turns, reward, sft_row in zip(infos, batch.column("prompt").to_pylist(),
                                                       batch.column("reward_model").to_pylist(), matched):
            sft_row = sft_row if sft_row["id"] is not None else None
            _check_rl(report, info, prompt_turns, reward, sft_row, answers)
    _fill_answers(report, store, answers)
    if xtuner:
        _check_xtuner_export(report, xtuner, max_tokens)
    else:
        for category, samples in tokens.items():
            s = samples.fit()
            for i, item in enumerate(pa.chunked_array(token_ids[category], pa.string()).to_pylist()):
                _over(report, "token_budget", item, samples.count(i, s), max_tokens)
    if verl:
        _check_verl_export(report, verl, max_prompt_length, patch_size)
    return report


def _check_rl(report: CheckReport, info: dict, prompt_turns: list, reward: dict, sft_row: dict | None,
              answers: dict[str, list[int]]) -> None:
    """One RL row; `sft_row` is its SFT twin's answer span and blind flag (None: no SFT row). An
    example that quotes the SFT answer gets it later (`_fill_answers`): the answers are not kept."""
    prompt = prompt_turns[-1]["content"] if prompt_turns else ""
    report.checked["rl_prompt"] += 1
    truth = reward["ground_truth"]
    if info["reward_kind"] == "temporal_iou":
        m = _GROUNDING.match(prompt)
        if not m:
            report.fail("rl_prompt", f"{info['id']}: not the evaluators' grounding template: {prompt[:120]!r}")
        elif m[1] != f"{info['duration_s']:.1f}" or _SAYS_WHEN.search(m[2]):
            report.fail("rl_prompt", f"{info['id']}: duration {m[1]} vs {info['duration_s']:.1f}, or the "
                                     f"description says when: {m[2][:80]!r}")
        span = json.loads(truth)
        _check_spans(report, info["id"], info["duration_s"], [tuple(span)])
        report.checked["sft_rl_agree"] += 1
        if sft_row is None or sft_row["span"] != [float(x) for x in span]:
            quoted = sft_row is not None and len(report.examples["sft_rl_agree"]) < 5
            report.fail("sft_rl_agree", f"{info['id']}: RL {span} vs SFT " + ("" if sft_row else repr("(no sft row)")))
            if quoted:
                answers.setdefault(info["id"], []).append(len(report.examples["sft_rl_agree"]) - 1)
    else:
        m = _MC.match(prompt)
        if not m or truth not in "ABCD" or len(truth) != 1:
            report.fail("rl_prompt", f"{info['id']}: not a lettered 4-option prompt with the answer line, or "
                                     f"ground truth {truth!r}")
    _check_blind(report, info["id"], {"blind_answerable": sft_row["blind"]} if sft_row else None)


def _check_ambiguity(report: CheckReport, store: DatasetStore, captioned: list[pa.Table]) -> None:
    """The ambiguity rule, per `videos` record batch: its accepted videos' captions against the sft rows
    that name them. Examples are the first five in sft order, as a row-by-row pass gives them."""
    import heapq

    rows = pa.concat_tables(captioned) if captioned else None
    if rows is None or not rows.num_rows:
        return
    failed, first = 0, []  # first: (place in the sft stream, example) of the earliest five
    for batch in store.iter_batches("videos", ["video_id", "status", "captions"]):
        batch = batch.filter(pc.and_(pc.equal(batch.column("status"), "accepted"),
                                     pc.is_in(batch.column("video_id"), value_set=rows["video_id"])))
        if not batch.num_rows:
            continue
        at = pc.index_in(rows["video_id"], value_set=batch.column("video_id"))
        mine = pc.is_valid(at)
        captions = batch.column("captions").to_pylist()
        for row, i in zip(rows.filter(mine).to_pylist(), at.filter(mine).to_pylist()):
            one = CheckReport()
            video = {"captions": captions[i]}
            if row["format"] == "grounding":
                _check_grounding_unique(one, row, video)
            if row["qa_type"] == "time_order" and row["format"] == "multiple_choice":
                _check_order_unique(one, row, video)
            report.checked["ambiguous"] += one.checked["ambiguous"]
            for example in one.examples.get("ambiguous", []):
                failed += 1
                heapq.heappush(first, (-row["at"], example))
                if len(first) > 5:
                    heapq.heappop(first)
    report.violations["ambiguous"] += failed
    report.examples["ambiguous"] += [example for _, example in sorted(first, reverse=True)]


def _fill_answers(report: CheckReport, store: DatasetStore, answers: dict[str, list[int]]) -> None:
    """Quote the SFT answers in the (at most five) sft_rl_agree examples that name one."""
    if not answers:
        return
    examples, last = report.examples["sft_rl_agree"], {}
    for batch in store.iter_batches("sft", ["id", "answer"]):
        batch = batch.filter(pc.is_in(batch.column("id"), value_set=pa.array(list(answers), pa.string())))
        last.update(zip(batch.column("id").to_pylist(), batch.column("answer").to_pylist()))
    for item, places in answers.items():
        for k in places:
            examples[k] += repr(last[item])


def _over(report: CheckReport, rule: str, item: str, count: Any, cap: int) -> None:
    report.checked[rule] += 1
    if count.over(cap):
        report.fail(rule, f"{item}: {count.error or f'{count.total_tokens} tokens > {cap}'} "
                          f"({count.frames} frames of {count.width}x{count.height})")


def _check_xtuner_export(report: CheckReport, dest: str, cap: int) -> None:
    """Every line of an xtuner export under its meta.json dataset's settings, as the trainer reads them
    (a key the entry lacks takes the long config's default)."""
    from dataclasses import fields

    from pipeline.budget import XtunerSettings, count_xtuner

    meta = json.loads(open(os.path.join(dest, "meta.json")).read())
    known = {f.name for f in fields(XtunerSettings)}
    for name, entry in meta.items():
        settings = XtunerSettings(**{k: v for k, v in entry.items() if k in known}, max_length=cap)
        with open(entry["annotation"]) as fh:
            for line in fh:
                obj = json.loads(line)
                _over(report, "token_budget", f"{name}/{obj.get('id')}", count_xtuner(obj["messages"], settings), cap)


def _check_verl_export(report: CheckReport, dest: str, max_prompt_length: int, patch_size: int) -> None:
    """Every verl row: its prompt with the video sampled and resized under its entry's limits."""
    import pyarrow.parquet as pq

    from pipeline.budget import QwenVideoSettings, VideoFacts, count_qwen
    from pipeline.trainer_media import trainer_view

    table = pq.read_table(os.path.join(dest, "train.parquet"), columns=["prompt", "videos", "extra_info"])
    views: dict[str, Any] = {}
    for prompt, videos, info in zip(*(table.column(c).to_pylist() for c in ("prompt", "videos", "extra_info"))):
        v = videos[0]
        path = v["video"]
        if path not in views:
            views[path] = trainer_view(path)
        view = views[path]
        if view is None:
            report.checked["verl_prompt"] += 1
            report.fail("verl_prompt", f"{info['id']}: {path} cannot be opened (decord)")
            continue
        settings = QwenVideoSettings(**{k: v[k] for k in ("fps", "min_frames", "max_frames", "min_pixels",
                                                          "max_pixels", "total_pixels") if v.get(k) is not None},
                                     patch_size=patch_size)
        # the Qwen-VL chat template: its default system turn, the prompt, the assistant header
        text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                + "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in prompt)
                + "<|im_start|>assistant\n")
        count = count_qwen(VideoFacts(view.width, view.height, view.frames, view.avg_fps), settings, text)
        _over(report, "verl_prompt", info["id"], count, max_prompt_length)


def _check_spans(report: CheckReport, item: str, duration: float, spans: Iterable[tuple]) -> None:
    for span in spans:
        report.checked["span_in_video"] += 1
        if len(span) != 2 or not (0 <= span[0] < span[1] <= duration):
            report.fail("span_in_video", f"{item}: span {list(span)} outside 0-{duration} s")


def _check_blind(report: CheckReport, item: str, verification: dict | None) -> None:
    report.checked["blind_kept"] += 1
    if verification and verification.get("blind_answerable"):
        report.fail("blind_kept", f"{item}: kept although the verifier answered it without the video")


def _check_grounding_unique(report: CheckReport, row: dict, video: dict) -> None:
    m = re.search(r'following description: "(.+)"$', row["question"], re.DOTALL)
    captions = video.get("captions") or []
    if not m or not captions:
        return
    report.checked["ambiguous"] += 1
    s, e = row["evidence_start_s"], row["evidence_end_s"]
    inside = [_coverage(m[1], c["text"]) for c in captions if c["start_s"] < e and c["end_s"] > s]
    outside = [_coverage(m[1], c["text"]) for c in captions if not (c["start_s"] < e and c["end_s"] > s)]
    if not inside or (outside and max(outside) >= max(inside)):
        report.fail("ambiguous", f"{row['id']}: {m[1][:80]!r} fits a window outside {s}-{e} s as well")


def _check_order_unique(report: CheckReport, row: dict, video: dict) -> None:
    captions = video.get("captions") or []
    if not captions:
        return
    report.checked["ambiguous"] += 1
    owners = []
    for option in row["options"]:
        scores = [_coverage(option, c["text"]) for c in captions]
        best = max(scores)
        hits = [i for i, sc in enumerate(scores) if sc == best]
        if len(hits) != 1:
            report.fail("ambiguous", f"{row['id']}: option {option[:60]!r} fits {len(hits)} windows")
            return
        owners.append(hits[0])
    first = "first" in row["question"]
    starts = [captions[i]["start_s"] for i in owners]
    want = starts.index(min(starts) if first else max(starts))
    if len(set(owners)) != 4 or row["options"][want] != row["answer"]:
        report.fail("ambiguous", f"{row['id']}: the options' windows do not make {row['answer'][:60]!r} the answer")


@dataclass
class FullDecode:
    """A whole video decoded by decord, frame by frame."""

    frames: int
    sizes: set
    last_frame_s: float
    error: str | None = None


def full_decode(path: str, uri: str | None = None, batch: int = 64) -> FullDecode:
    """Decode every frame with decord (from the store through fsspec when the root is not mounted)."""
    import io

    try:
        from decord import VideoReader, cpu
    except ImportError:
        return FullDecode(0, set(), 0.0, "decord (the SFT trainer's reader) is not installed")
    try:
        if os.path.exists(path) or not uri:
            source: Any = path
        else:
            import fsspec

            with fsspec.open(uri, "rb") as fh:
                source = io.BytesIO(fh.read())
        reader = VideoReader(source, ctx=cpu(0), num_threads=1)
        n, sizes = len(reader), set()
        for start in range(0, n, batch):
            shape = reader.get_batch(list(range(start, min(n, start + batch)))).shape
            sizes.add((int(shape[2]), int(shape[1])))
        return FullDecode(n, sizes, float(reader.get_frame_timestamp(n - 1)[0]) if n else 0.0)
    except Exception as exc:  # noqa: BLE001 - whatever decord cannot read, the trainer cannot either
        return FullDecode(0, set(), 0.0, f"{type(exc).__name__}: {exc}")


def _check_decode(report: CheckReport, item: str, video: dict, decoded: FullDecode) -> None:
    report.checked["trainer_decode"] += 1
    wh, length, fps = tuple(video["image_wh"]), video["origin_video_length"], video["origin_fps"]
    if decoded.error or not decoded.frames:
        report.fail("trainer_decode", f"{item}: {video['url']} does not decode: {decoded.error}")
    elif decoded.sizes != {wh}:
        report.fail("trainer_decode", f"{item}: image_wh {list(wh)}, decoded frames {sorted(decoded.sizes)}")
    elif length > decoded.frames:
        report.fail("trainer_decode", f"{item}: origin_video_length {length} > {decoded.frames} decoded frames")
    elif decoded.frames > 1 and abs((decoded.frames - 1) / fps - decoded.last_frame_s) > \
            max(0.5, 0.02 * decoded.last_frame_s):
        report.fail("trainer_decode", f"{item}: origin_fps {fps} puts the last frame at "
                                      f"{(decoded.frames - 1) / fps:.2f} s, decord has it at {decoded.last_frame_s:.2f} s")
