"""The limiter's logic on a fake clock: paced slots, identity choice, benches, half-open probes, pauses."""
from __future__ import annotations

import pytest

from pipeline.acquire.config import FetchConfig
from pipeline.acquire.limiter import (FetchPaused, IdentityBudget, IdentityLost, LimiterCore, LimiterSpec,
                                      LocalLimiter, SubtitlesBenched, Throttle)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _core(*names: str, per_hour: float | None = 3600.0, bench_s: float = 10.0, bench_max_s: float = 40.0):
    clock = Clock()
    spec = LimiterSpec(tuple(IdentityBudget(n, per_hour, per_hour, per_hour) for n in names),
                       bench_s=bench_s, bench_max_s=bench_max_s, poll_s=1.0)
    return LimiterCore(spec, clock), clock


def test_slots_are_paced_evenly_across_callers():
    core, clock = _core("a", per_hour=3600.0)  # one request per second
    grant = core.lease()
    waits = [core.take(grant.lease, "request").wait_s for _ in range(5)]
    assert waits == [0.0, 1.0, 2.0, 3.0, 4.0]  # each caller sleeps until its own slot
    clock.now += 10  # an idle gap earns no burst
    assert [core.take(grant.lease, "request").wait_s for _ in range(2)] == [0.0, 1.0]
    # downloads and subtitles have budgets of their own
    assert core.take(grant.lease, "download").wait_s == 0.0
    assert core.take(grant.lease, "subtitle").wait_s == 0.0
    with pytest.raises(ValueError):
        core.take(grant.lease, "bogus")


def test_new_leases_go_to_the_identity_with_the_soonest_slot():
    core, _ = _core("a", "b")
    first = core.lease()
    core.take(first.lease, "request")
    assert core.lease().identity != first.identity


def test_block_benches_with_backoff_then_one_probe_closes_it():
    core, clock = _core("a", bench_s=10.0, bench_max_s=25.0)
    lease = core.lease().lease
    core.report(lease, "bot_check")
    paused = core.lease()
    assert paused.paused and paused.wait_s == pytest.approx(10.0) and "bot_check" in paused.reason
    assert not core.take(lease, "request").ok  # the benched identity takes no requests
    clock.now += 10
    probe = core.lease()
    assert probe.probe and probe.identity == "a"
    assert core.lease().paused  # one probe at a time while half-open
    core.report(probe.lease, "rate_limited")  # the probe fails: bench doubles
    assert core.lease().wait_s == pytest.approx(20.0)
    clock.now += 20
    probe = core.lease()
    core.report(probe.lease, "bot_check")
    assert core.lease().wait_s == pytest.approx(25.0)  # capped at bench_max_s
    clock.now += 25
    probe = core.lease()
    core.report(probe.lease, "ok")
    assert not core.lease().paused  # closed again
    stats = core.stats()
    assert stats["counts"]["benched"] == 3 and stats["counts"]["probes"] == 3
    assert stats["paused_s"] == pytest.approx(55.0)
    assert stats["pauses"] == [{"seconds": 55.0, "ongoing": False, "reasons": {"bot_check": 1}}]
    assert stats["identities"]["a"]["state"] == "closed" and stats["identities"]["a"]["failures"] == 0


def test_one_storm_is_one_bench_and_stale_leases_are_void():
    core, clock = _core("a", bench_s=10.0)
    leases = [core.lease().lease for _ in range(3)]  # three workers on the same identity
    core.report(leases[0], "bot_check")
    core.report(leases[1], "bot_check")  # the same storm seen by another worker: no second bench
    assert core.stats()["counts"]["benched"] == 1
    assert core.lease().wait_s == pytest.approx(10.0)
    clock.now += 10
    assert not core.valid(leases[2])  # granted before the bench: must start over
    assert not core.take(leases[2], "request").ok
    probe = core.lease()
    core.report(leases[2], "ok")  # a late answer from before the bench says nothing
    assert core.lease().paused
    core.report(probe.lease, "ok")
    assert not core.lease().paused


def test_fetching_pauses_only_when_every_identity_is_benched():
    core, clock = _core("a", "b", bench_s=10.0)
    a, b = core.lease(), core.lease()
    assert {a.identity, b.identity} == {"a", "b"}
    core.report(a.lease, "rate_limited")
    other = core.lease()
    assert not other.paused and other.identity == b.identity  # b carries on
    assert core.stats()["paused_s"] == 0.0
    core.report(b.lease, "bot_check")
    clock.now += 4
    stats = core.stats()
    assert stats["pauses"][0]["ongoing"] and stats["paused_s"] == pytest.approx(4.0)
    assert stats["pause_reasons"] == {"bot_check": 1, "rate_limited": 1}
    clock.now += 6  # both benches over: the next two leases probe both, not only the first to recover
    probes = [core.lease(), core.lease()]
    assert all(g.probe for g in probes) and {g.identity for g in probes} == {"a", "b"}
    core.report(probes[0].lease, "ok")
    assert not core.stats()["pauses"][0]["ongoing"]


def test_inconclusive_probe_and_a_dead_probe_free_the_identity():
    core, clock = _core("a", bench_s=10.0)
    core.report(core.lease().lease, "bot_check")
    clock.now += 10
    probe = core.lease()
    core.report(probe.lease, "inconclusive")  # e.g. a network error: no verdict
    second = core.lease()
    assert second.probe
    clock.now += core.spec.probe_timeout_s + 1  # its worker died without a word
    assert core.lease().probe


def test_subtitles_are_benched_on_their_own():
    core, clock = _core("a", bench_s=10.0)
    lease = core.lease().lease
    core.report(lease, "rate_limited", lane="subtitles")
    assert not core.take(lease, "subtitle").ok  # skipped, not waited for
    assert core.take(lease, "request").ok  # the identity still fetches videos
    assert not core.lease().paused
    clock.now += 10
    assert core.take(lease, "subtitle").ok
    assert core.stats()["counts"]["subtitles_skipped"] == 1


def test_stats_since_a_mark_leave_earlier_runs_out():
    core, clock = _core("a", bench_s=5.0)
    lease = core.lease().lease
    core.take(lease, "request")
    core.report(lease, "bot_check")
    clock.now += 5
    core.report(core.lease().lease, "ok")  # first run: one pause of 5 s
    mark = core.mark()
    lease = core.lease().lease
    core.take(lease, "request")
    core.take(lease, "request")
    stats = core.stats(mark)
    assert stats["counts"]["request"] == 2 and "benched" not in stats["counts"]
    assert stats["paused_s"] == 0.0 and stats["pauses"] == []
    assert core.stats()["counts"]["request"] == 3


def test_throttle_sleeps_for_slots_and_gives_up_after_max_pause():
    clock = Clock()
    spec = LimiterSpec((IdentityBudget("a", 1800.0),), bench_s=30.0, bench_max_s=30.0, poll_s=1.0)
    limiter = LocalLimiter(spec, clock)
    throttle = Throttle(limiter, max_pause_s=50.0, sleep=clock.sleep)
    lease = throttle.lease()
    start = clock.now
    for _ in range(3):
        throttle.take(lease, "request")
    assert clock.now - start == pytest.approx(4.0)  # slots 2 s apart: slept 0, 2, 2
    throttle.report(lease, "rate_limited", lane="subtitles")
    with pytest.raises(SubtitlesBenched):
        throttle.take(lease, "subtitle")
    throttle.report(lease, "bot_check")
    with pytest.raises(IdentityLost):
        throttle.take(lease, "request")
    throttle.release(lease)
    probe = throttle.lease()  # waited out the 30 s bench
    assert probe.probe and 30.0 <= throttle.paused_s <= 33.0  # the bench, and at most a tenth of it as jitter
    throttle.report(probe, "bot_check")
    throttle.release(probe)
    impatient = Throttle(limiter, max_pause_s=20.0, sleep=clock.sleep)
    with pytest.raises(FetchPaused) as err:
        impatient.lease()  # the bench has 30 s to go
    assert 20.0 <= err.value.waited_s < 21.0 and "benched" in str(err.value)
    assert throttle.overhead()["calls"] > 5


def test_spec_from_config_inherits_default_budgets_and_keys_by_content():
    cfg = FetchConfig(identities=[{"name": "guest"}, {"name": "acct", "cookies_file": "c.txt", "requests_per_hour": 4000}],
                      limits={"requests_per_hour": 1000, "downloads_per_hour": 300})
    spec = LimiterSpec.from_config(cfg)
    assert [(i.name, i.requests_per_hour, i.downloads_per_hour) for i in spec.identities] == [
        ("guest", 1000, 300), ("acct", 4000, 300)]
    assert spec.key == LimiterSpec.from_config(cfg.model_copy()).key
    assert spec.key != LimiterSpec.from_config(FetchConfig()).key
    assert [i.name for i in LimiterSpec.from_config(FetchConfig(proxy="socks5://127.0.0.1:1")).identities] == ["default"]
    with pytest.raises(ValueError):
        FetchConfig(proxy="socks5://127.0.0.1:1", identities=[{"name": "a"}])
    with pytest.raises(ValueError):
        FetchConfig(identities=[{"name": "a"}, {"name": "a"}])


def test_paused_workers_back_off_while_a_probe_is_out():
    # every identity benched, then one worker's probe is out for over 8 minutes (under the probe
    # timeout): the others used to ask once a second (500 calls each; 4.6x the limiter's capacity
    # at 6,400 workers)
    clock = Clock()
    spec = LimiterSpec((IdentityBudget("a"),), bench_s=300.0, bench_max_s=300.0, poll_s=1.0)
    probe_out_for = 500.0
    probe = {}

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if "lease" not in probe and clock.now >= 100.0 + 300.0:  # the bench is over: another worker probes
            probe["lease"], probe["at"] = limiter.lease().lease, clock.now
        if "lease" in probe and clock.now >= probe["at"] + probe_out_for and not probe.get("done"):
            limiter.report(probe["lease"], "ok")  # its good answer ends the pause
            probe["done"] = clock.now

    import random

    calls = []
    for seed in range(20):  # twenty workers' jitter
        clock.now = 100.0
        probe.clear()
        limiter = LocalLimiter(spec, clock)
        first = limiter.lease()
        limiter.report(first.lease, "bot_check")
        limiter.release(first.lease)
        throttle = Throttle(limiter, max_pause_s=7200.0, sleep=sleep, max_poll_s=30.0, rng=random.Random(seed))
        lease = throttle.lease()
        assert not lease.probe and probe["done"] <= clock.now <= probe["done"] + 30.0  # resumes within max_poll_s
        calls.append(throttle.calls)
    # one call for the bench, ~5 to back off to 30 s, then one per 15-30 s of the probe's 500 s
    assert max(calls) <= 2 + 5 + probe_out_for / 15.0 + 1, calls
    assert sum(calls) / len(calls) < 0.1 * probe_out_for, calls
