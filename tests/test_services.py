"""Cluster services survive their worker's death (the run's own ones, such as the near-duplicate
registry, as well as the shared ones), and a shared one (the fetch limiter) outlives the run that
started it: Ray garbage-collects a named actor once its last handle is dropped, and the next run's
lookup by name found it dying (the suite's ActorDiedError, "all references to the actor were
removed")."""
from __future__ import annotations

import gc
import os
import signal
import time

from pipeline.services import close_services, start_service
from pipeline.stage import Service


class Counter:
    """A service object with state: seeded by its arguments, changed by calls."""

    def __init__(self, start: int) -> None:
        self.value = start

    def add(self, n: int) -> int:
        self.value += n
        return self.value

    def pid(self) -> int:
        return os.getpid()


def test_a_runs_own_service_is_rebuilt_from_its_arguments_when_its_worker_dies(ray_local):
    proxy = start_service(Service("counter", Counter, (10,)))
    try:
        assert proxy.add(5) == 15
        first = proxy.pid()
        os.kill(first, signal.SIGKILL)  # as Ray's memory monitor or a crash would
        deadline = time.monotonic() + 120
        while True:  # the call in flight is retried on the restarted actor, seeded again with 10
            value = proxy.add(1)
            if proxy.pid() != first:
                break
            assert time.monotonic() < deadline, "the service never came back"
        assert value == 11
    finally:
        close_services([(_NoStage(), Service("counter", Counter, (10,)), proxy)])


class _NoStage:
    def bind(self, name, proxy) -> None:
        pass


def test_a_shared_service_outlives_the_run_that_started_it(ray_local):
    service = Service("test-shared-counter", Counter, (100,), shared=True)
    first = start_service(service)
    assert first.add(5) == 105
    del first  # the run ends: its stages and proxies are gone
    gc.collect()
    time.sleep(2.0)  # what Ray needs to collect an unreferenced actor
    again = start_service(service)  # the next run finds the same one, state and all
    assert again.add(1) == 106
