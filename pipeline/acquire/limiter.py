"""One request budget for the whole cluster, per egress identity, and a breaker for bot-check storms.

Every fetch worker on every node asks one limiter before it talks to the origin:

- `lease()` picks an identity (a proxy and/or a cookie account) for one attempt at one video;
- `take(lease, kind)` reserves the next slot of that identity's budget for one request
  (`request`: extraction and header probes; `download`: one media download; `subtitle`:
  one subtitle file) and says how long to wait for it;
- `report(lease, outcome)` tells the breaker how the origin answered.

Budgets are per identity and per hour, paced evenly (GCRA: slots `3600 / per_hour` apart,
no bursts), so the origin sees the configured rate however many workers there are. An
identity that gets a bot check or a 429 is benched (`bench_s`, doubling while it keeps
failing, up to `bench_max_s`); when its bench ends it is half-open: exactly one attempt
probes it, and only a good answer puts it back. While no identity is usable, fetching
pauses: `lease()` answers "wait", workers sleep, and the videos wait with them instead of
becoming `bot_check` rejects. Subtitles have their own bench: a subtitle 429 benches only
the identity's subtitles, which are skipped (never waited for) until it ends.

`LimiterCore` is the logic (one clock, no threads); `LocalLimiter` is the thread-safe
in-process implementation (single process, tests, the bench); the runner serves the same
core from a named Ray actor (pipeline/runner.py) so that all workers share it. `Throttle`
is the worker's side: it sleeps, waits out pauses and counts its own overhead.

Written here rather than taken from a library: rate-limit libraries (limits, pyrate-limiter)
answer "allowed now?" per key, circuit breakers (pybreaker) guard one callee; neither has
slot reservations across processes, a pool of identities or pausing when all are benched.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol

KINDS = ("request", "download", "subtitle")
BLOCKS = ("bot_check", "rate_limited")  # outcomes that bench an identity
OK, INCONCLUSIVE = "ok", "inconclusive"


@dataclass(frozen=True)
class IdentityBudget:
    """An identity's name and its budgets (None = unlimited)."""

    name: str
    requests_per_hour: float | None = None
    downloads_per_hour: float | None = None
    subtitle_requests_per_hour: float | None = None

    def per_hour(self, kind: str) -> float | None:
        return {"request": self.requests_per_hour, "download": self.downloads_per_hour,
                "subtitle": self.subtitle_requests_per_hour}[kind]


@dataclass(frozen=True)
class LimiterSpec:
    """Everything a limiter is built from; equal specs share one limiter in a cluster."""

    identities: tuple[IdentityBudget, ...]
    bench_s: float = 300.0
    bench_max_s: float = 3600.0
    probe_timeout_s: float = 600.0  # a probe that never reports (its worker died) frees the identity
    poll_s: float = 1.0  # paused workers' first polling step while a probe is out (then backing off)

    @property
    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @classmethod
    def from_config(cls, cfg: Any) -> "LimiterSpec":
        """From a FetchConfig: its identities, each identity's budgets falling back to `limits`."""
        lim = cfg.limits
        ids = tuple(IdentityBudget(
            i.name,
            i.requests_per_hour or lim.requests_per_hour,
            i.downloads_per_hour or lim.downloads_per_hour,
            i.subtitle_requests_per_hour or lim.subtitle_requests_per_hour) for i in cfg.identity_list())
        return cls(ids, bench_s=lim.bench_s, bench_max_s=lim.bench_max_s,
                   poll_s=min(1.0, lim.bench_s))


@dataclass
class Grant:
    """Answer to `lease()`: an identity to use, or (paused) how long to wait before asking again."""

    lease: int | None
    identity: str | None
    probe: bool = False
    wait_s: float = 0.0
    reason: str | None = None  # paused: why (the benched identities' last block reasons)
    poll: bool = False  # paused while a probe is out: wait_s is a polling step, not a known end

    @property
    def paused(self) -> bool:
        return self.lease is None


@dataclass
class Slot:
    """Answer to `take()`: go after `wait_s`, or not at all (the identity was benched meanwhile)."""

    ok: bool
    wait_s: float = 0.0
    reason: str | None = None


class FetchLimiter(Protocol):
    """What FetchStage needs from a limiter; LocalLimiter and the runner's Ray actor provide it."""

    def lease(self) -> Grant: ...
    def take(self, lease: int, kind: str) -> Slot: ...
    def valid(self, lease: int) -> bool: ...
    def report(self, lease: int, outcome: str, lane: str = "fetch") -> None: ...
    def release(self, lease: int) -> None: ...
    def mark(self) -> int: ...
    def stats(self, since: int | None = None) -> dict[str, Any]: ...


class _Gate:
    """Evenly paced slots: each reservation is `interval` after the previous one (GCRA)."""

    def __init__(self, per_hour: float | None):
        self.interval = 3600.0 / per_hour if per_hour else 0.0
        self.tat = -math.inf  # theoretical arrival time of the next free slot

    def reserve(self, now: float) -> float:
        if not self.interval:
            return 0.0
        start = max(now, self.tat)
        self.tat = start + self.interval
        return start - now

    def next_free(self, now: float) -> float:
        return max(now, self.tat)


@dataclass
class _Identity:
    budget: IdentityBudget
    gates: dict[str, _Gate]
    state: str = "closed"  # closed (usable) | open (benched) | half_open (one probe may go)
    failures: int = 0
    bench_until: float = 0.0
    epoch: int = 0  # bumped at every bench: leases from before it are void
    probe: int | None = None
    probe_at: float = 0.0
    last_block: str | None = None
    sub_failures: int = 0
    sub_bench_until: float = 0.0
    active: int = 0  # leases out
    counts: Counter = field(default_factory=Counter)

    def load(self, now: float) -> tuple[float, int]:
        """When a new lease here would get its slots: the next free ones, after those of the leases out."""
        gates = (self.gates["request"], self.gates["download"])
        return max(g.next_free(now) for g in gates) + self.active * max(g.interval for g in gates), self.active


@dataclass
class _Lease:
    identity: str
    epoch: int
    probe: bool


class LimiterCore:
    """The limiter's state machine over one clock; not thread-safe (LocalLimiter / an actor serialise it)."""

    def __init__(self, spec: LimiterSpec, clock: Callable[[], float] = time.monotonic):
        if not spec.identities:
            raise ValueError("a limiter needs at least one identity")
        self.spec = spec
        self.clock = clock
        self.ids = {b.name: _Identity(b, {k: _Gate(b.per_hour(k)) for k in KINDS}) for b in spec.identities}
        self.leases: dict[int, _Lease] = {}
        self._next = itertools.count(1)
        self.counts: Counter = Counter()
        self.waited_s = 0.0
        self.pauses: list[dict[str, Any]] = []  # {"start": t, "end": t | None, "reasons": {...}}
        self.marks: dict[int, tuple[float, Counter, float]] = {}

    # -- state -----------------------------------------------------------------
    def _refresh(self, ident: _Identity, now: float) -> None:
        if ident.state == "open" and now >= ident.bench_until:
            ident.state, ident.probe = "half_open", None
        if ident.state == "half_open" and ident.probe is not None and now - ident.probe_at > self.spec.probe_timeout_s:
            self.release(ident.probe)

    def _bench_for(self, failures: int) -> float:
        return min(self.spec.bench_s * 2 ** (failures - 1), self.spec.bench_max_s)

    def _paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1]["end"] is None

    @staticmethod
    def _usable(lease: int, held: _Lease, ident: _Identity) -> bool:
        if held.epoch != ident.epoch or ident.state == "open":
            return False
        return ident.state == "closed" or ident.probe == lease

    # -- the protocol ------------------------------------------------------------
    def lease(self) -> Grant:
        now = self.clock()
        for ident in self.ids.values():
            self._refresh(ident, now)
        free = [i for i in self.ids.values() if i.state == "half_open" and i.probe is None]
        if free:  # a bench is over: probe it first, or it would stay out while others work
            ident = min(free, key=lambda i: i.bench_until)
            grant = self._grant(ident, probe=True)
            ident.probe, ident.probe_at = grant.lease, now
            self.counts["probes"] += 1
            return grant
        closed = [i for i in self.ids.values() if i.state == "closed"]
        if closed:  # the identity whose slots come soonest
            return self._grant(min(closed, key=lambda i: i.load(now)), probe=False)
        waits = [i.bench_until - now for i in self.ids.values() if i.state == "open"]
        probing = any(i.state == "half_open" for i in self.ids.values())
        reasons = self.pauses[-1]["reasons"] if self._paused() else {}
        why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "every identity is benched"
        if probing and (not waits or min(waits) > self.spec.poll_s):  # only the probe's answer can end it
            return Grant(None, None, wait_s=self.spec.poll_s, reason=why, poll=True)
        return Grant(None, None, wait_s=max(0.01, min(waits)), reason=why)

    def _grant(self, ident: _Identity, probe: bool) -> Grant:
        lease = next(self._next)
        self.leases[lease] = _Lease(ident.budget.name, ident.epoch, probe)
        ident.active += 1
        self.counts["leases"] += 1
        return Grant(lease, ident.budget.name, probe=probe)

    def take(self, lease: int, kind: str) -> Slot:
        if kind not in KINDS:
            raise ValueError(f"unknown budget kind {kind!r}; one of {KINDS}")
        now = self.clock()
        held = self.leases.get(lease)
        if held is None:
            return Slot(False, reason="lease expired")
        ident = self.ids[held.identity]
        self._refresh(ident, now)
        if kind == "subtitle":
            if now < ident.sub_bench_until:
                self.counts["subtitles_skipped"] += 1
                return Slot(False, reason=f"subtitles of {ident.budget.name} benched after {ident.last_block or 'a 429'}")
        elif not self._usable(lease, held, ident):
            self.counts["lost_leases"] += 1
            return Slot(False, reason=f"identity {ident.budget.name} was benched")
        wait = ident.gates[kind].reserve(now)
        ident.counts[kind] += 1
        self.counts[kind] += 1
        self.waited_s += wait
        return Slot(True, wait)

    def valid(self, lease: int) -> bool:
        held = self.leases.get(lease)
        if held is None:
            return False
        ident = self.ids[held.identity]
        self._refresh(ident, self.clock())
        return self._usable(lease, held, ident)

    def report(self, lease: int, outcome: str, lane: str = "fetch") -> None:
        """How the origin answered an attempt: ok, inconclusive (no answer), or a block reason."""
        now = self.clock()
        held = self.leases.get(lease)
        if held is None:
            return
        ident = self.ids[held.identity]
        if lane == "subtitles":
            if outcome in BLOCKS:
                ident.sub_failures += 1
                ident.sub_bench_until = now + self._bench_for(ident.sub_failures)
                ident.counts[f"subtitle_{outcome}"] += 1
                self.counts[f"subtitle_{outcome}"] += 1
            elif outcome == OK:
                ident.sub_failures = 0
            return
        is_probe = ident.probe == lease
        if outcome == OK:
            if held.epoch != ident.epoch:
                return  # a slow attempt from before the bench: says nothing about now
            if is_probe:
                ident.state, ident.probe = "closed", None
                self._end_pause(now)
            if ident.state == "closed":
                ident.failures = 0
        elif outcome in BLOCKS:
            ident.counts[outcome] += 1
            self.counts[outcome] += 1
            if held.epoch != ident.epoch or not (ident.state == "closed" or is_probe):
                return  # already benched by another worker's report: one storm, one bench
            ident.failures += 1
            ident.state, ident.probe, ident.last_block = "open", None, outcome
            ident.bench_until = now + self._bench_for(ident.failures)
            ident.epoch += 1
            ident.counts["benched"] += 1
            self.counts["benched"] += 1
            if not any(i.state == "closed" for i in self.ids.values()):
                self._start_pause(now)
        elif is_probe:  # inconclusive: let another attempt probe
            ident.probe = None

    def release(self, lease: int) -> None:
        held = self.leases.pop(lease, None)
        if held is not None:
            ident = self.ids[held.identity]
            ident.active -= 1
            if ident.probe == lease:
                ident.probe = None

    # -- pauses and stats ----------------------------------------------------------
    def _start_pause(self, now: float) -> None:
        reasons = Counter(i.last_block for i in self.ids.values() if i.last_block)
        if self._paused():
            self.pauses[-1]["reasons"] = dict(reasons)
        else:
            self.pauses.append({"start": now, "end": None, "reasons": dict(reasons)})

    def _end_pause(self, now: float) -> None:
        if self._paused():
            self.pauses[-1]["end"] = now

    def mark(self) -> int:
        """A point to report stats from (one run of a job); counters and pauses before it are left out."""
        mark = next(self._next)
        self.marks[mark] = (self.clock(), Counter(self.counts), self.waited_s)
        return mark

    def stats(self, since: int | None = None) -> dict[str, Any]:
        """Counters, wait and pause times (since a mark), and each identity's state, JSON-ready."""
        now = self.clock()
        t0, base, waited0 = self.marks.get(since or 0, (-math.inf, Counter(), 0.0))
        pauses = []
        for p in self.pauses:
            end = now if p["end"] is None else p["end"]
            if end <= t0:
                continue
            pauses.append({"seconds": round(end - max(p["start"], t0), 3), "ongoing": p["end"] is None,
                           "reasons": p["reasons"]})
        reasons: Counter = Counter()
        for p in pauses:
            reasons.update(p["reasons"])
        counts = Counter(self.counts)
        counts.subtract(base)
        for ident in self.ids.values():
            self._refresh(ident, now)
        return {
            "counts": {k: v for k, v in sorted(counts.items()) if v},
            "waited_s": round(self.waited_s - waited0, 3),
            "paused_s": round(sum(p["seconds"] for p in pauses), 3),
            "pauses": pauses,
            "pause_reasons": dict(reasons),
            "identities": {name: {"state": i.state, "failures": i.failures,
                                  "bench_left_s": round(max(0.0, i.bench_until - now), 3) if i.state == "open" else 0.0,
                                  "counts": dict(i.counts)} for name, i in self.ids.items()},
        }


class LocalLimiter:
    """The in-process limiter: one LimiterCore behind a lock (threads of one process share it)."""

    def __init__(self, spec: LimiterSpec, clock: Callable[[], float] = time.monotonic):
        self.spec = spec
        self.core = LimiterCore(spec, clock)
        self._lock = threading.Lock()

    def lease(self) -> Grant:
        with self._lock:
            return self.core.lease()

    def take(self, lease: int, kind: str) -> Slot:
        with self._lock:
            return self.core.take(lease, kind)

    def valid(self, lease: int) -> bool:
        with self._lock:
            return self.core.valid(lease)

    def report(self, lease: int, outcome: str, lane: str = "fetch") -> None:
        with self._lock:
            self.core.report(lease, outcome, lane)

    def release(self, lease: int) -> None:
        with self._lock:
            self.core.release(lease)

    def mark(self) -> int:
        with self._lock:
            return self.core.mark()

    def stats(self, since: int | None = None) -> dict[str, Any]:
        with self._lock:
            return self.core.stats(since)


class IdentityLost(Exception):
    """The lease's identity was benched while the attempt ran: start again with a new lease."""


class FetchPaused(Exception):
    """Every identity stayed benched for longer than max_pause_s."""

    def __init__(self, waited_s: float, reason: str | None, block: str):
        super().__init__(f"fetching paused for {waited_s:.0f} s and every identity is still benched ({reason})")
        self.waited_s, self.reason, self.block = waited_s, reason, block


class SubtitlesBenched(Exception):
    """Subtitles of this identity are benched: skip them (never wait for them)."""


@dataclass
class Lease:
    """One attempt's hold on an identity."""

    id: int
    identity: str
    probe: bool = False


class Throttle:
    """The worker's side of a limiter: sleeps for its slots, waits out pauses, counts its overhead.

    `overhead_s / calls` is what the limiter costs per call (time inside limiter calls,
    not the sleeps it asks for): microseconds in-process, a round trip for an actor.

    While fetching is paused a worker sleeps until the bench it was told of ends (plus a jitter
    of up to a tenth of the wait, so that thousands of workers do not ask at the same instant:
    only one of them may probe anyway), and
    while a probe is out (an end nobody knows) it backs off: each poll step doubles, up to
    `max_poll_s` (`for_limits`: the bench length, at most 30 s), with jitter (half to the whole step). So a worker asks about
    log2(max_poll_s / poll_s) + pause / max_poll_s times in a pause, not once a second; fetching
    resumes at most `max_poll_s` after the probe's good answer.
    """

    def __init__(self, limiter: FetchLimiter, max_pause_s: float, sleep: Callable[[float], None] = time.sleep,
                 max_poll_s: float = 30.0, rng: random.Random | None = None):
        self.limiter, self.max_pause_s, self.max_poll_s = limiter, max_pause_s, max_poll_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.calls = 0
        self.overhead_s = 0.0
        self.slept_s = 0.0
        self.paused_s = 0.0
        self._count = threading.Lock()  # worker threads share one throttle (the bench does)

    @classmethod
    def for_limits(cls, limiter: FetchLimiter, limits: Any) -> "Throttle":
        """A worker's throttle for a `fetch.limits` config: backing off up to the bench length
        (`bench_s`), at most 30 s."""
        return cls(limiter, limits.max_pause_s, max_poll_s=min(30.0, limits.bench_s))

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            spent = time.perf_counter() - start
            with self._count:
                self.overhead_s += spent
                self.calls += 1

    def lease(self, last_block: str = "bot_check") -> Lease:
        """An identity for the next attempt; waits while fetching is paused."""
        waited, polls = 0.0, 0
        while True:
            grant = self._call(self.limiter.lease)
            if not grant.paused:
                return Lease(grant.lease, grant.identity, grant.probe)
            if waited >= self.max_pause_s:
                raise FetchPaused(waited, grant.reason, last_block)
            if grant.poll:  # capped exponential backoff with jitter
                step = min(grant.wait_s * 2 ** polls, max(self.max_poll_s, grant.wait_s))
                step *= self._rng.uniform(0.5, 1.0)
                polls += 1
            else:  # a known end: sleep until then, spread over one poll step
                step = grant.wait_s + self._rng.uniform(0.0, min(0.1 * grant.wait_s, self.max_poll_s))
            step = min(step, self.max_pause_s - waited + 0.01)
            self._sleep(step)
            waited += step
            with self._count:
                self.paused_s += step

    def take(self, lease: Lease, kind: str) -> None:
        """Wait for one slot of `kind`; raises IdentityLost / SubtitlesBenched when it must not go."""
        slot = self._call(self.limiter.take, lease.id, kind)
        if not slot.ok:
            raise (SubtitlesBenched if kind == "subtitle" else IdentityLost)(slot.reason)
        if slot.wait_s > 0:
            self._sleep(slot.wait_s)
            with self._count:
                self.slept_s += slot.wait_s
            if kind != "subtitle" and not self._call(self.limiter.valid, lease.id):
                raise IdentityLost(f"identity {lease.identity} was benched while waiting for a slot")

    def report(self, lease: Lease, outcome: str, lane: str = "fetch") -> None:
        self._call(self.limiter.report, lease.id, outcome, lane)

    def release(self, lease: Lease) -> None:
        self._call(self.limiter.release, lease.id)

    def overhead(self) -> dict[str, float]:
        return {"calls": self.calls, "overhead_s": round(self.overhead_s, 6),
                "per_call_us": round(1e6 * self.overhead_s / self.calls, 1) if self.calls else 0.0}


def stats_line(stats: dict[str, Any]) -> str:
    """The limiter's stats in one line: traffic, rate waits, benches, and how long fetching paused, why."""
    c = stats.get("counts", {})
    line = (f"fetch limiter: {c.get('request', 0)} requests, {c.get('download', 0)} downloads, "
            f"{c.get('subtitle', 0)} subtitles; waited {stats.get('waited_s', 0):.1f} s for slots; "
            f"identities benched {c.get('benched', 0)} times (bot_check {c.get('bot_check', 0)}, "
            f"rate_limited {c.get('rate_limited', 0)})")
    pauses = stats.get("pauses", [])
    if pauses:
        why = ", ".join(f"{k} {v}" for k, v in sorted(stats.get("pause_reasons", {}).items())) or "benched"
        line += (f"; fetching paused {stats.get('paused_s', 0):.1f} s in {len(pauses)} pause(s) "
                 f"(every identity benched: {why})")
    return line
