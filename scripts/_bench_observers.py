"""What watching decisions costs: a SimpleRate hit of one limit on
SyncRedis and on MemoryBackend with Prometheus metrics on (a
``PrometheusObserver`` of the limiter's own, on a registry of its own), and
the same MemoryBackend hit through a copy of the engine's lone path without
the observer hook, beside which the hook's cost with nobody listening is
judged: ``Limiter.hit`` calls the lone path, and so the copy is called
through a function of its own, lest the hook be charged for a call. On
Redis the case with metrics off is ``_bench_cases``' own; the embedded ones
share a MemoryBackend of their own with their own case with metrics off,
since a store that holds every other case's keys answers at another
speed."""

from functools import partial

import redis
from prometheus_client import CollectorRegistry

from _bench_cases import LIMITS
from _bench_measure import Case
from luathrottle import Decision, Limiter
from luathrottle._checks import Check
from luathrottle._lone import _alone
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from luathrottle.prometheus import PrometheusObserver

__all__ = ["observer_cases"]


def _hookless(limiter: Limiter, key: str) -> Decision:
    """``limiter.hit(key)`` less the observer hook, in as many calls."""
    return _decided_hookless(limiter._check(key, "hit"))


def _decided_hookless(check: Check) -> Decision:
    """``decide_one(check)`` as the engine's lone path decides it, less the
    observer hook: who listens, shadow mode and the denial log."""
    words = _alone(check)
    assert words is not None
    reply = check.backend.run_script(check.script, *words)  # type: ignore[union-attr]
    return Decision.from_reply(check.limits, reply, check.keys)


def _metered(backend: SyncRedis | MemoryBackend) -> Limiter:
    return Limiter(
        LIMITS[1],
        backend=backend,
        observers=[PrometheusObserver(registry=CollectorRegistry())],
    )


def observer_cases(client: redis.Redis) -> list[Case]:
    """Prometheus on, on both stores, and the hookless MemoryBackend hit."""
    memory = MemoryBackend()
    hookless = Limiter(LIMITS[1], backend=memory)
    return [
        Case(
            "lt.memory_alone.simple.1",
            "MemoryBackend hit, metrics off, a store of its own: SimpleRate, 1 limit",
            "luathrottle",
            op=partial(Limiter(LIMITS[1], backend=memory).hit, "bench:alone"),
            uses_redis=False,
        ),
        Case(
            "lt.sync_redis_prometheus.simple.1",
            "SyncRedis hit, Prometheus on: SimpleRate, 1 limit",
            "luathrottle",
            op=partial(_metered(SyncRedis(client)).hit, "bench:prometheus"),
        ),
        Case(
            "lt.memory_prometheus.simple.1",
            "MemoryBackend hit, Prometheus on: SimpleRate, 1 limit",
            "luathrottle",
            op=partial(_metered(memory).hit, "bench:prometheus"),
            uses_redis=False,
        ),
        Case(
            "lt.memory_hookless.simple.1",
            "MemoryBackend hit without the observer hook: SimpleRate, 1 limit",
            "luathrottle",
            op=partial(_hookless, hookless, "bench:hookless"),
            uses_redis=False,
        ),
    ]
