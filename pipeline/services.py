"""Cluster-wide services (`pipeline.stage.Service`): the fetch limiter, the near-duplicate
registry, whatever comes next. One named actor holds the Ray-free object; the stage gets a
picklable proxy and never sees Ray. The runner starts them for a bare plan, the job for a run.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from pipeline.stage import Service, Stage, leaves


_SHARED_ATTEMPTS = 8
_KEPT: dict[str, Any] = {}  # shared services' handles, held by this driver while it lives


class _ServiceActor:
    """Ray actor body: one service object; calls are serialised (one at a time)."""

    def __init__(self, make: Callable[..., Any], args: tuple) -> None:
        self.obj = make(*args)

    def ready(self) -> bool:
        return True

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.obj, method)(*args)


class ServiceProxy:
    """A picklable stand-in for a service object: every method call runs in its named actor."""

    def __init__(self, name: str, namespace: str | None) -> None:
        self.name, self.namespace = name, namespace
        self._handle = None

    def __getstate__(self) -> dict:
        return {"name": self.name, "namespace": self.namespace}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["name"], state["namespace"])

    def _actor(self) -> Any:
        import ray

        if self._handle is None:
            self._handle = ray.get_actor(self.name, namespace=self.namespace)
        return self._handle

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any) -> Any:
            import ray

            return ray.get(self._actor().call.remote(method, *args))

        return call

    def close(self) -> None:
        """End the actor (a run's own service: its state was this run's only)."""
        import ray

        ray.kill(self._actor())
        self._handle = None


def start_service(service: Service) -> ServiceProxy:
    """Start (or, shared, find) the named actor of `service` on the driver's node; its proxy.

    A shared service is named as asked in namespace `curate`, so runs asking for the same one
    use it, also from other drivers while its owner lives. A run's own service gets a unique
    name and ends with `close_services`. Both need no CPU and both are restarted if their
    worker dies (Ray's memory monitor on a busy node, a crash): the object is rebuilt from its
    arguments and the calls in flight are retried. A rebuilt registry is seeded again from the
    committed signatures; the claims of the run so far are lost with it, so a copy may pass
    once in the rare run whose registry died, rather than the whole run failing.
    """
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)  # the driver's node
    body = ray.remote(_ServiceActor)
    if service.shared:
        name, namespace = service.name, "curate"
        for attempt in range(_SHARED_ATTEMPTS):
            handle = body.options(name=name, namespace=namespace, get_if_exists=True, num_cpus=0, max_restarts=-1,
                                  max_task_retries=-1, scheduling_strategy=here).remote(service.make, service.args)
            try:
                ray.get(handle.ready.remote())
                break
            except ray.exceptions.RayActorError:
                # found by name while dying (its owner ended): the name is released moments later,
                # then this creates a fresh one
                if attempt == _SHARED_ATTEMPTS - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
        # the driver holds a handle for as long as it lives: a named actor whose last handle is
        # dropped is garbage-collected by Ray, and the next run's get_if_exists could find it dying
        # (the suite's ActorDiedError: "all references to the actor were removed")
        kept = _KEPT.get(name)
        if kept is None or kept._actor_id != handle._actor_id:  # keep the creating handle: one found
            _KEPT[name] = handle                                # by name does not keep the actor alive
    else:
        name, namespace = f"{service.name}-{uuid.uuid4().hex[:8]}", ray.get_runtime_context().namespace
        handle = body.options(name=name, num_cpus=0, max_restarts=-1, max_task_retries=-1,
                              scheduling_strategy=here).remote(service.make, service.args)
        ray.get(handle.ready.remote())  # fail here, not in a worker, if it cannot start
    proxy = ServiceProxy(name, namespace)
    proxy._handle = handle
    return proxy


def start_services(stages: Sequence[Stage], dataset: Any = None) -> list[tuple[Stage, Service, ServiceProxy]]:
    """Start every service the stages still need and bind them; what was started (for `close_services`)."""
    started = []
    for stage in leaves(stages):
        for service in stage.services(dataset):
            proxy = start_service(service)
            stage.bind(service.name, proxy)
            started.append((stage, service, proxy))
    return started


def close_services(started: Sequence[tuple[Stage, Service, ServiceProxy]]) -> None:
    """End the run's own services and unbind their stages; shared ones live on."""
    for stage, service, proxy in started:
        if not service.shared:
            try:
                proxy.close()
            except Exception:  # noqa: BLE001 - already gone with its node
                pass
            stage.bind(service.name, None)
