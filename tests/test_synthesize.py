"""Synthesis: item checks and repairs, composed items, and a full run against a scripted teacher."""
from __future__ import annotations

import json
import re
from collections import Counter

import datasets
import pytest

from pipeline.config import load_config
from pipeline.job import run_job
from pipeline.plan import build_stages, ingest
from pipeline.samples import SampleSpec, make_video
from synth.captions import Window
from synth.items import QAItem, balance_letters, check_item, drop_near_duplicates
from synth.prompting import load_prompt
from synth.replies import longest_reply
from tests.teacher import REJECTED_IN_GOOD, TeacherServer, caption_for, good_items


@pytest.mark.parametrize("index, expected", [(0, "open_ended"), (1, "multiple_choice"), (2, "multiple_choice"),
                                             (3, "grounding"), (4, "missing_field"), (5, "span_out_of_range"),
                                             (6, "answer_not_in_options"), (7, "hedge_answer"),
                                             (8, "answer_leaked_in_question")])
def test_check_item_keeps_repairs_or_rejects_with_reason(index, expected):
    out = check_item(good_items(20.0)[index], 20.0, "v1")
    got = out.format if isinstance(out, QAItem) else out.reason
    assert got == expected


def test_repairs_letters_prefixes_and_spans():
    mc = check_item(good_items(20.0)[1], 20.0, "v1")
    assert mc.answer == "Left to right" and mc.answer_letter == "A"
    prefixed = check_item(good_items(20.0)[2], 20.0, "v1")
    assert prefixed.options[1] == "Stays still" and prefixed.answer == "Stays still"
    grounding = check_item({"category": "Spatial-Temporal", "type": "temporal_localization", "format": "grounding",
                            "query": "The box turns blue.", "answer": "from 9 to 4 s"}, 20.0, "v1")
    assert (grounding.category, grounding.evidence_start_s, grounding.evidence_end_s) == ("spatio_temporal", 4.0, 9.0)
    assert grounding.question == ('Given the video of duration 20.0 seconds, find the start and end timestamps '
                                  '(in seconds) of the moment that best matches the following description: '
                                  '"The box turns blue."')
    no_query = {"category": "spatio_temporal", "type": "temporal_localization", "format": "grounding",
                "question": "During which time span is the picture mostly gray?", "answer": [2, 4]}
    assert check_item(no_query, 20.0, "v1").reason == "missing_field"  # a bare question cannot be the RL prompt
    timed = {**no_query, "query": "The picture is gray between 2 and 4 seconds."}
    assert check_item(timed, 20.0, "v1").reason == "time_in_query"
    # spans are rounded first, then kept inside the video: 23.1667 s never becomes 23.2
    edge = check_item({**no_query, "query": "A gray picture.", "answer": [22.0, 23.1667]}, 23.1667, "v1")
    assert (edge.evidence_end_s, edge.answer) == (23.1, "The event happens in 22.0 - 23.1 seconds.")
    assert check_item("just text", 20.0, "v1").reason == "unparseable"
    assert check_item({**good_items(20.0)[0], "category": "astrology", "type": "x"}, 20.0, "v1").reason == "invalid_value"


def test_near_duplicates_and_balanced_letters():
    items = [check_item(good_items(20.0)[i], 20.0, "v1") for i in (0, 9, 1, 2)]
    kept, dropped = drop_near_duplicates(items)
    assert len(kept) == 3 and dropped[0].reason == "duplicate_question"
    mcs = [QAItem("perception", "count", "multiple_choice", f"q{i}", "right", 0, 1, ["w1", "right", "w2", "w3"])
           for i in range(8)]
    balance_letters(mcs)
    assert Counter(m.answer_letter for m in mcs) == {"A": 2, "B": 2, "C": 2, "D": 2}
    assert all(sorted(m.options) == ["right", "w1", "w2", "w3"] for m in mcs)


def test_letters_balance_across_videos_with_few_questions_each():
    """Two MC items per video over 400 videos: every letter near a quarter, not A and B only."""
    import zlib

    counts = Counter()
    for v in range(400):
        mcs = [QAItem("perception", "count", "multiple_choice", f"q{i}", "right", 0, 1, ["right", "w1", "w2", "w3"])
               for i in range(2)]
        balance_letters(mcs, offset=zlib.crc32(f"video{v:05d}".encode()) % 4)
        counts.update(m.answer_letter for m in mcs)
    assert all(160 <= counts[k] <= 240 for k in "ABCD"), counts


def test_composed_items_take_answers_from_measured_scenes_and_queries_without_times():
    from synth.composed import composed_items, plan_moments
    from tests.teacher import time_free

    spans = [(0, 4), (4, 10), (10, 15), (15, 20), (20, 27)]  # five different colour words
    windows = [Window(i, i, float(s), float(e), caption_for(s, e)) for i, (s, e) in enumerate(spans)]
    assert all("seconds" in w.caption for w in windows)  # what a real teacher's captions look like
    plan = plan_moments(windows, grounding=3, order=1, min_words=4)
    assert len(plan.grounding) == 3 and [len(g) for g in plan.order] == [4]
    copied = {w.index: w.caption for w in plan.targets}  # queries copied from captions answer themselves
    items, dropped = composed_items(plan, copied, windows, 27.0, "v1")
    assert items == [] and {r.reason for r in dropped} == {"time_in_query"}
    free = {w.index: time_free(w.caption) for w in plan.targets}
    items, dropped = composed_items(plan, free, windows, 27.0, "v1")
    ground = [i for i in items if i.format == "grounding"]
    assert len(ground) == 3 and not dropped
    for item in ground:
        w = next(w for w in windows if time_free(w.caption) == item.query)
        assert (item.evidence_start_s, item.evidence_end_s) == (w.start_s, w.end_s)
        assert item.question.startswith("Given the video of duration 27.0 seconds, find the start and end")
        assert "second" not in item.query
    [order] = [i for i in items if i.format == "multiple_choice"]
    assert order.question.endswith("happens first in the video?")
    assert order.answer == time_free(windows[0].caption)  # the earliest of the four scenes, by measured time
    assert len(order.options) == 4 and order.answer in order.options
    # a description that fits two windows (same caption content) is ambiguous: dropped
    twins = [Window(0, 0, 0.0, 5.0, caption_for(0, 5)), Window(1, 1, 5.0, 9.0, caption_for(0, 5))]
    items, dropped = composed_items(plan_moments(twins, 2, 0, 4), {0: time_free(twins[0].caption)}, twins, 9.0, "v1")
    assert items == [] and [r.reason for r in dropped] == ["ambiguous_query"]
    split = [Window(0, 0, 0.0, 30.0, caption_for(0, 30)), Window(1, 0, 30.0, 60.0, caption_for(30, 60))]
    assert plan_moments(split, 4, 0, 4).grounding == []  # parts of one scene have no measured span


def test_prompts_are_versioned_files():
    p = load_prompt("write_qa")
    assert p.tag == "write_qa.v2" and "{captions}" in p.template
    from synth.taxonomy import CATEGORIES

    rendered = p.render(duration=1.0, count=1, captions="", description="", taxonomy=__import__(
        "synth.taxonomy", fromlist=["taxonomy_text"]).taxonomy_text())
    assert all(t in rendered for types in CATEGORIES.values() for t in types)  # the taxonomy comes from code
    with pytest.raises(KeyError, match="versions"):
        load_prompt("write_qa", 99)


DURATIONS = (12, 13, 14, 15, 16)


@pytest.fixture(scope="module", params=["actors", "passes"])
def synth_run(request, ray_local, tmp_path_factory):
    """One job per execution: stage actors with their own backends, and Ray Data passes per round."""
    media = tmp_path_factory.mktemp("media")
    paths = [str(make_video(media / f"v{d}.mp4", SampleSpec([3.0, d - 7.0, 4.0], fps=12, width=160, height=96,
                                                              seed=d))) for d in DURATIONS]
    out = tmp_path_factory.mktemp("ds") / "out"
    with TeacherServer() as server:
        cfg = load_config(None, [
            f"work_dir={tmp_path_factory.mktemp('work')}", "fetch.min_duration_s=5", "select.min_duration_s=5",
            "synth.teacher.kind=openai", "synth.teacher.model=scripted-teacher",
            f"synth.teacher.openai.base_url={server.base_url}", "synth.teacher.openai.api_key_env=null",
            "synth.teacher.openai.timeout_s=1.5", "synth.teacher.openai.max_retries=2",
            "synth.teacher.openai.backoff_base_s=0.05", "synth.teacher.openai.backoff_max_s=0.2",
            "synth.qa.items_per_video=10", "synth.caption.window_s=30", f"synth.execution={request.param}",
            "synth.wave_videos=3"])
        cfg.input.items = paths
        said: list[str] = []
        first = run_job(cfg, str(out), ingest=ingest, stage_factory=build_stages, progress=False,
                        echo=said.append)
        received = list(server.received)
        server.healed = True  # the teacher answers every video now: the next run completes the dataset
        summary = run_job(cfg, str(out), ingest=ingest, stage_factory=build_stages, progress=False,
                          echo=said.append)
        received_again = list(server.received)[len(received):]
    if request.param == "passes":  # first run: two waves (3 + 2 videos), each round one pass
        assert sum(line.startswith("wave ") for line in said) == 3, said  # + the re-run's one wave
        # the re-run asks only what failed: its captions, summaries, descriptions are stored answers
        assert sum("round caption (teacher, openai)" in line for line in said) == 2, said
        assert said[-2].startswith("  round write_qa") and "2 requests" in said[-2], said
    return first, summary, out, received, received_again


def test_failed_or_non_json_replies_leave_the_video_for_the_next_run(synth_run):
    """A 200 with non-JSON content (13 s) and a teacher that keeps failing (15 s) are retried;
    when they still fail the video is not committed as complete, and the next run finishes it."""
    first, second, out, received, again = synth_run
    assert first.status == {"accepted": 3, "rejected": 2} and first.reasons == {"model_error": 2}
    qa = [r for r in received if "Video duration" in r.prompt]
    assert sum("13.0 seconds" in r.prompt for r in qa) == 3  # non-JSON: asked 1 + 2 retries
    assert sum("15.0 seconds" in r.prompt for r in qa) == 3  # HTTP 500: asked 1 + 2 retries
    from pipeline.job import RETRYABLE_REASONS

    assert "model_error" in RETRYABLE_REASONS
    assert second.skipped == 3 and second.processed == 2 and second.status == {"accepted": 2}
    assert {round(float(m)) for r in again for m in re.findall(r"Video duration: ([\d.]+)", r.prompt)} == {13, 15}
    assert len(again) == 2  # only the QA replies that had failed: the rest is reused from OUT/_cache
    assert second.cost["cached_requests"] > 0


def test_run_completes_and_every_item_is_kept_or_rejected(synth_run):
    _, summary, out, received, _ = synth_run
    sft = datasets.load_dataset(str(out), "sft", split="train")
    rejects = datasets.load_dataset(str(out), "rejects", split="train")
    videos = {r["video_id"]: r for r in datasets.load_dataset(str(out), "videos", split="train")}
    by_duration = {round(v["duration_s"]): vid for vid, v in videos.items()}
    teacher_rows = Counter(r["video_id"] for r in sft if not r["id"].split("-")[-1].startswith("c")
                           and r["format"] != "description")
    item_rejects = {d: Counter(r["reason"] for r in rejects if r["video_id"] == by_duration[d]) for d in DURATIONS}
    # good teacher (and the throttled and hanging ones, after retries): 4 kept, 6 rejected, one reason each
    for d in DURATIONS:  # 13 and 15 after the re-run
        assert teacher_rows[by_duration[d]] == 4, d
        assert item_rejects[d] == REJECTED_IN_GOOD, d
    # composed items and descriptions exist for every video, whatever the QA writer did
    for vid in videos:
        rows = [r for r in sft if r["video_id"] == vid]
        assert any(r["format"] == "grounding" and r["id"].split("-")[-1].startswith("c") for r in rows)
        assert sum(r["format"] == "description" for r in rows) == 1
    first = synth_run[0]
    assert first.qa_kept + summary.qa_kept == len(sft)  # QA items and one description per video
    assert sum(first.item_rejects.values()) + sum(summary.item_rejects.values()) == len(rejects)
    qa_requests = [r for r in received if "Video duration" in r.prompt]
    assert sum("14.0 seconds" in r.prompt for r in qa_requests) == 2  # 429, then retried
    # the QA prompt's own schema: as many items as asked, each field bounded, so its budget is a bound
    formats = [r.body.get("response_format") for r in qa_requests]
    assert all(f["type"] == "json_schema" and f["json_schema"]["name"] == "qa_items" for f in formats)
    items = formats[0]["json_schema"]["schema"]["properties"]["items"]
    assert items["maxItems"] == 10 and items["items"]["properties"]["category"]["enum"][0] == "perception"
    assert all(r.body["max_tokens"] == longest_reply(r.body["response_format"]["json_schema"]["schema"]) + 1
               for r in qa_requests)


def test_grounding_rows_match_measured_scenes_and_sft_format(synth_run):
    _, _, out, received, _ = synth_run
    videos = {r["video_id"]: r for r in datasets.load_dataset(str(out), "videos", split="train")}
    rl = datasets.load_dataset(str(out), "rl", split="train")
    for row in rl:
        if row["extra_info"]["reward_kind"] != "temporal_iou" or not row["data_source"].startswith(
                "longvideo-curation/composed"):
            continue
        span = json.loads(row["reward_model"]["ground_truth"])
        scenes = [(s["start_s"], s["end_s"]) for s in videos[row["video_id"]]["scenes"]]
        assert min(abs(span[0] - a) + abs(span[1] - b) for a, b in scenes) <= 0.1 + 1e-9  # at 0.1 s
        assert "Given the video of duration" in row["prompt"][0]["content"]
    letters = [r["reward_model"]["ground_truth"] for r in rl if r["extra_info"]["reward_kind"] == "option_letter"]
    assert letters and set(letters) <= set("ABCD")
    sft = datasets.load_dataset(str(out), "sft", split="train")
    row = next(r for r in sft if r["format"] == "multiple_choice")
    user, assistant = row["messages"][-2], row["messages"][-1]
    video = user["content"][0]["video_url"]
    v = videos[row["video_id"]]
    assert video["image_wh"] == [v["width"], v["height"]] and video["origin_video_length"] == v["frame_count"]
    assert user["content"][1]["text"].startswith("<VIDEO_CONTEXT>\n") and "Answer with the option letter only." \
        in user["content"][1]["text"]
    assert assistant["content"][0]["text"][0] in "ABCD"
    # captions were asked with frames and their timestamps
    caption_reqs = [r for r in received if "sampled from" in r.prompt]
    parts = caption_reqs[0].body["messages"][-1]["content"]
    assert any(p.get("type") == "image_url" and p["image_url"]["url"].startswith("data:image/jpeg;base64,")
               for p in parts)
    assert any(p.get("type") == "text" and p["text"].startswith("Frame at ") for p in parts)


def test_cost_is_accounted(synth_run):
    summary = synth_run[0]
    report = summary.cost_report()["teacher"]
    assert report["total"]["requests"] >= 5 * 3 and report["total"]["prompt_tokens"] > 0
    assert report["per_kept_item"]["requests"] > 0
    assert "teacher cost" in summary.render()
    q = synth_run[1].quality  # after the re-run: the whole dataset
    assert set(q["category"]) >= {"perception", "spatio_temporal", "holistic"} and q["format"]["description"] == 5
    assert sum(q["answer_letters"].values()) > 0
    assert q["evidence_span_s"]["max"] <= 16.0 and "qa:hedge_answer" in q["rejects"]


def test_synthesize_stage_with_in_process_tiny_model(tmp_path):
    """transformers backend, no Ray: real frames in, every request costed, output parsed or rejected."""
    from pipeline.acquire.config import FetchConfig
    from pipeline.acquire.ingest import build_tasks
    from pipeline.acquire.stages import FetchStage
    from pipeline.schema import validate_row
    from pipeline.segment.stages import SegmentStage
    from pipeline.stage import apply_stage
    from synth.config import SynthConfig
    from synth.synthesize import SynthesizeStage
    from tests.helpers import PROV
    from tests.tiny_models import build_tiny_llava

    model = build_tiny_llava(tmp_path / "model")
    video = make_video(tmp_path / "v.mp4", SampleSpec([3.0, 4.0, 3.0], fps=10, width=160, height=96))
    [task] = build_tasks([str(video)]).tasks
    [task] = apply_stage(FetchStage(FetchConfig(min_duration_s=1), cache_root=tmp_path), [task])
    [task] = apply_stage(SegmentStage(), [task])
    assert not task.rejected and len(task.scenes) == 3 and task.frames
    cfg = SynthConfig.model_validate({
        "teacher": {"kind": "transformers", "model": "tiny-llava",
                    "transformers": {"model_path": str(model), "device": "cpu", "max_frames": 4}},
        "caption": {"max_tokens": 16, "describe_max_tokens": 32, "max_frames_per_window": 2},
        "qa": {"max_tokens": 64, "items_per_video": 3, "min_caption_words": 1}})
    stage = SynthesizeStage(cfg)
    [task] = apply_stage(stage, [task])
    cost = task.cost
    assert cost.requests == 3 + 1 + 1 + 1  # 3 windows, 1 moments (text), 1 description, 1 QA writing
    assert cost.visual_tokens == 3 * 2 * 4  # 2 frames per window, 4 tokens per 28 px frame
    assert cost.output_tokens > 0
    # a random tiny model does not write JSON where JSON is asked (moments, QA): those requests fail,
    # and the video is not committed as complete but left for the next run
    assert cost.failed_requests == 2
    assert task.reject_reason == "model_error" and "write_qa: malformed_response" in task.reject_message
    from pipeline.records import video_row

    assert validate_row("videos", {**video_row(task), "stage_keys": [], **PROV}) is None


def test_a_failed_pass_rejects_its_wave_for_a_retry(ray_local, tmp_path):
    """Engines that cannot start fail the pass: the wave is rejected as stage_error, not lost."""
    from pipeline.job import RETRYABLE_REASONS

    paths = [str(make_video(tmp_path / f"v{d}.mp4", SampleSpec([3.0, d - 6.0, 3.0], fps=8, width=96, height=64,
                                                                 seed=d))) for d in (9, 10, 11)]
    cfg = load_config(None, [
        f"work_dir={tmp_path / 'work'}", "fetch.min_duration_s=5", "select.min_duration_s=5",
        "synth.teacher.kind=transformers", f"synth.teacher.transformers.model_path={tmp_path / 'no-such-model'}",
        "synth.execution=passes", "synth.wave_videos=2"])
    cfg.input.items = paths
    said: list[str] = []
    summary = run_job(cfg, str(tmp_path / "out"), ingest=ingest, stage_factory=build_stages, progress=False,
                      echo=said.append)
    assert summary.processed == 3 and summary.reasons == {"stage_error": 3}
    assert "stage_error" in RETRYABLE_REASONS
    videos = datasets.load_dataset(str(tmp_path / "out"), "videos", split="train")
    assert all(r["status"] == "rejected" and "round caption (teacher) pass failed" in r["reject_message"]
               for r in videos)
    assert sum(line.startswith("wave ") for line in said) == 2  # each wave failed on its own
