"""`curate plan` after each kind of change on a committed dataset, and what the run then redoes.

One committed dataset (3 videos, scripted teacher and verifier: tests/test_rerun.py's world),
then one change at a time, kept for the next: a filter bound, a dedupe bound, a segment
setting, a select bound, a synthesis prompt version, a verifier setting. Each is planned (the
stage whose config part changed, and every stage after it as `input`), then run: nothing is
downloaded again, and only the rounds whose requests changed are sent to the models (the rest
are answered from OUT/_cache).
"""
from __future__ import annotations


from tests.test_rerun import IDS, _rerun, world  # noqa: F401 - the shared fixture (one committed dataset)

MEDIA = ["fetch", "segment", "select", "filter", "dedupe"]
AFTER = {s: MEDIA[MEDIA.index(s) + 1:] + ["synthesize", "verify"] for s in MEDIA}
VERIFYING = {"verify", "blind", "judge", "reconfirm"}  # what verifying new items may ask
CHANGES = [  # (override, the stage it changes, the part, rounds the run must send, rounds it may send)
    ("filter.static_video=0.98", "filter", "config", set(), set()),
    ("dedupe.match.max_hamming=8", "dedupe", "config", set(), set()),
    ("segment.gradual_diff=2.5", "segment", "config", set(), set()),
    ("select.scene_min_s=0.5", "select", "config", set(), set()),
    ("synth.prompts={write_qa: 2}", "synthesize", "prompts", {"write_qa", "verify"}, {"write_qa"} | VERIFYING),
    ("verify.samples=2", "verify", "config", {"verify"}, {"verify"}),
]


def test_each_kind_of_change_is_planned_and_only_it_is_redone(world, capsys):  # noqa: F811
    done: list[str] = []
    for override, stage, part, must, may in CHANGES:
        done.append(override)
        planned, summary, got, fetched = _rerun(world, list(done))
        with capsys.disabled():
            print(f"\n--set {override}\n{planned.render()}\nrun: downloads {fetched}, model requests sent "
                  f"{dict(sorted((k, v) for k, v in got.items() if v))}, status {dict(summary.status)}")
        assert planned.pending == {"changed": len(IDS)} and planned.skipped == 0
        stages = {s: dict(why) for s, why in planned.stages.items()}
        assert stages[stage] == {part: len(IDS)}
        later = AFTER.get(stage, ["verify"] if stage == "synthesize" else [])
        assert {s: w for s, w in stages.items() if s != stage} == {s: {"input": len(IDS)} for s in later}
        assert fetched == 0 and planned.downloads == 0  # every video is in this node's cache
        sent = {r for r, n in got.items() if n}
        assert must <= sent <= may, (override, got)
        assert summary.status == {"accepted": len(IDS)}
