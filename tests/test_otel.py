"""luathrottle.otel on the OpenTelemetry SDK: the metrics of every outcome,
the breaker gauge, and a span event for each denial, never an identity."""

import logging
import os
import subprocess
import sys
from importlib import metadata

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from luathrottle import (
    CircuitBreaker,
    ConcurrencyLimiter,
    Limiter,
    add_observer,
)
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from luathrottle.otel import OtelObserver
from servers import free_port
from threads import hit_from_threads

IDENTITY = "alice@example.com"
LIMITER = {"algorithm": "fixed_window", "door": "limiter"}
LEASES = {"limit": "1 in flight", "algorithm": "concurrency", "door": "concurrency"}


def labels(**attributes):
    return frozenset(attributes.items())


class Recorded:
    """An SDK meter provider whose metrics a test reads back."""

    def __init__(self):
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(
            metric_readers=[self.reader], shutdown_on_exit=False
        )

    def metrics(self):
        data = self.reader.get_metrics_data()
        return [
            metric
            for resource in (data.resource_metrics if data else ())
            for scope in resource.scope_metrics
            for metric in scope.metrics
        ]

    def points(self, name):
        """Each data point of the metric ``name``, by its attributes."""
        return {
            frozenset(point.attributes.items()): point
            for metric in self.metrics()
            if metric.name == name
            for point in metric.data.data_points
        }

    def values(self, name):
        return {key: point.value for key, point in self.points(name).items()}


@pytest.fixture
def recorded():
    recorded = Recorded()
    yield recorded
    recorded.provider.shutdown()


@pytest.fixture
def observer(recorded):
    """An observer on ``recorded``'s provider, for every decision."""
    observer = OtelObserver(meter_provider=recorded.provider)
    add_observer(observer)
    yield observer
    observer.close()


@pytest.fixture
def spans():
    """A tracer whose finished spans are kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("tests"), exporter
    provider.shutdown()


def dead_store():
    return SyncRedis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", timeout=0.2, breaker=False
    )


class Ticks:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


# --- decisions ---------------------------------------------------------------


@pytest.mark.usefixtures("observer")
def test_decisions_are_counted_by_limit_door_algorithm_and_outcome(recorded):
    limiter = Limiter(2, 60, backend=MemoryBackend())
    for _ in range(3):
        limiter.hit(IDENTITY)
    assert recorded.values("luathrottle.decisions") == {
        labels(limit="2/60s", **LIMITER, outcome="admitted"): 2,
        labels(limit="2/60s", **LIMITER, outcome="denied"): 1,
    }


@pytest.mark.usefixtures("observer")
def test_the_denial_cache_answers_are_counted_and_take_no_store_time(recorded):
    limiter = Limiter(1, 60, backend=MemoryBackend(), cache_denials=True)
    for _ in range(4):
        limiter.hit(IDENTITY)
    assert recorded.values("luathrottle.decisions") == {
        labels(limit="1/60s", **LIMITER, outcome="admitted"): 1,
        labels(limit="1/60s", **LIMITER, outcome="denied"): 1,
        labels(limit="1/60s", **LIMITER, outcome="denied_from_cache"): 2,
    }
    assert recorded.values("luathrottle.denial_cache.answers") == {
        labels(limit="1/60s", **LIMITER): 2
    }
    # Only the two store calls were timed, by algorithm and door alone.
    [(key, point)] = recorded.points("luathrottle.store.duration").items()
    assert key == labels(**LIMITER)
    assert point.count == 2
    assert 0 < point.sum < 5


@pytest.mark.usefixtures("observer")
def test_store_time_has_buckets_below_a_millisecond(recorded):
    Limiter(1, 60, backend=MemoryBackend()).hit(IDENTITY)
    [point] = recorded.points("luathrottle.store.duration").values()
    assert point.explicit_bounds[0] < 0.001
    assert point.count == 1


@pytest.mark.usefixtures("observer")
def test_a_dead_store_counts_a_failed_open_decision_and_its_error(recorded):
    seen = []
    limiter = Limiter(
        2, 60, backend=dead_store(), on_failure="allow", observers=[seen.append]
    )
    assert [limiter.hit(IDENTITY).allowed for _ in range(2)] == [True, True]
    error = seen[0].error
    assert error is not None
    assert recorded.values("luathrottle.decisions") == {
        labels(limit="2/60s", **LIMITER, outcome="failed_open"): 2
    }
    assert recorded.values("luathrottle.store.failures") == {
        labels(**LIMITER, error=type(error).__name__): 2
    }
    # The failed calls were timed too.
    [point] = recorded.points("luathrottle.store.duration").values()
    assert point.count == 2


@pytest.mark.usefixtures("observer")
def test_shadow_denials_and_near_limits_are_outcomes_of_their_own(recorded):
    shadowed = Limiter(1, 60, backend=MemoryBackend(), shadow=True)
    nearing = Limiter(4, 60, backend=MemoryBackend(), near_limit=0.5)
    for _ in range(2):
        assert shadowed.hit(IDENTITY).allowed
    for _ in range(4):
        nearing.hit(IDENTITY)
    assert recorded.values("luathrottle.decisions") == {
        labels(limit="1/60s", **LIMITER, outcome="admitted"): 1,
        labels(limit="1/60s", **LIMITER, outcome="shadow_denied"): 1,
        # 3 and 2 left are admitted; 1 and 0, under half of 4, near the limit.
        labels(limit="4/60s", **LIMITER, outcome="admitted"): 2,
        labels(limit="4/60s", **LIMITER, outcome="near_limit"): 2,
    }


@pytest.mark.usefixtures("observer")
def test_leases_granted_refused_and_released_are_counted(recorded):
    limiter = ConcurrencyLimiter(1, lease=10, backend=MemoryBackend())
    lease = limiter.acquire(IDENTITY)
    assert not limiter.acquire(IDENTITY).allowed
    assert lease.release()
    assert recorded.values("luathrottle.decisions") == {
        labels(**LEASES, outcome="admitted"): 1,
        labels(**LEASES, outcome="lease_refused"): 1,
        labels(**LEASES, outcome="lease_released"): 1,
    }
    [(key, point)] = recorded.points("luathrottle.store.duration").items()
    assert key == labels(algorithm="concurrency", door="concurrency")
    assert point.count == 3


def test_a_limiters_own_observer_records_only_its_decisions(recorded):
    observer = OtelObserver(meter_provider=recorded.provider)
    try:
        Limiter(1, 60, backend=MemoryBackend(), observers=[observer]).hit(IDENTITY)
        Limiter(2, 60, backend=MemoryBackend()).hit(IDENTITY)
    finally:
        observer.close()
    assert recorded.values("luathrottle.decisions") == {
        labels(limit="1/60s", **LIMITER, outcome="admitted"): 1
    }


@pytest.mark.usefixtures("observer")
def test_the_meter_is_named_luathrottle_with_its_version(recorded):
    Limiter(1, 60, backend=MemoryBackend()).hit(IDENTITY)
    data = recorded.reader.get_metrics_data()
    assert data is not None
    [resource] = data.resource_metrics
    [scope] = resource.scope_metrics
    assert scope.scope.name == "luathrottle"
    assert scope.scope.version == metadata.version("luathrottle")


def test_a_meter_provider_of_another_kind_is_refused():
    with pytest.raises(TypeError, match="meter_provider"):
        OtelObserver(meter_provider=InMemoryMetricReader())


def test_the_global_meter_provider_is_the_default(caplog):
    # What Django's LUATHROTTLE["observers"] makes of the dotted path: the
    # class with no arguments, on whatever global provider there is.
    observer = OtelObserver()
    add_observer(observer)
    try:
        with caplog.at_level(logging.INFO, logger="luathrottle"):
            limiter = Limiter(1, 60, backend=MemoryBackend())
            assert [limiter.hit(IDENTITY).allowed for _ in range(2)] == [True, False]
    finally:
        observer.close()
    assert not [r for r in caplog.records if "observer" in r.getMessage()]


DJANGO_THEN_A_PROVIDER = """
import django
from django.conf import settings

settings.configure(
    LUATHROTTLE={"observers": ["luathrottle.otel.OtelObserver"]},
    INSTALLED_APPS=["luathrottle.django"],
)
django.setup()
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from luathrottle import Limiter
from luathrottle.backends.memory import MemoryBackend

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
limiter = Limiter(1, 60, backend=MemoryBackend())
for _ in range(3):
    limiter.hit("alice")
data = reader.get_metrics_data()
for resource in data.resource_metrics:
    for scope in resource.scope_metrics:
        for metric in scope.metrics:
            if metric.name == "luathrottle.decisions":
                for point in metric.data.data_points:
                    print(point.attributes["outcome"], point.value)
"""


def test_djangos_setting_records_on_a_global_provider_set_later():
    # A process sets its global provider once: this one is a process of its
    # own, whose observer Django makes before the provider is set.
    env = {**os.environ}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-c", DJANGO_THEN_A_PROVIDER],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split("\n")[:2]) == ["admitted 1", "denied 2"]


# --- the breaker gauge -------------------------------------------------------


@pytest.mark.usefixtures("observer")
def test_the_breaker_gauge_follows_the_breaker_of_a_store(recorded, server):
    ticks = Ticks()
    breaker = CircuitBreaker(failures=1, cool_off=10, clock=ticks)
    backend = SyncRedis.from_url(server.url, timeout=0.5, breaker=breaker)
    limiter = Limiter(5, 60, backend=backend, on_failure="allow")
    assert limiter.hit(IDENTITY).reason is None
    # A breaker that never changed has no point yet.
    assert recorded.values("luathrottle.breaker.open") == {}
    store = labels(store=f"redis 127.0.0.1:{server.port}/0")

    server.stop()
    assert limiter.hit(IDENTITY).reason == "store_unavailable"
    assert breaker.state == "open"
    assert recorded.values("luathrottle.breaker.open") == {store: 1}
    # While open, the breaker fails calls at once: a failure of its own kind.
    limiter.hit(IDENTITY)
    assert recorded.values("luathrottle.store.failures") == {
        labels(**LIMITER, error="BackendError"): 1,
        labels(**LIMITER, error="CircuitOpenError"): 1,
    }

    server.start()
    ticks.now += 10
    # A trial call under way: the breaker still refuses every other call.
    breaker.before_call()
    assert breaker.state == "half-open"
    assert recorded.values("luathrottle.breaker.open") == {store: 1}
    breaker.released()
    assert limiter.hit(IDENTITY).reason is None
    assert breaker.state == "closed"
    assert recorded.values("luathrottle.breaker.open") == {store: 0}


def test_a_closed_observer_watches_breakers_no_more(recorded):
    observer = OtelObserver(meter_provider=recorded.provider)
    observer.close()
    breaker = CircuitBreaker(failures=1)
    breaker.failed()
    assert breaker.state == "open"
    assert recorded.values("luathrottle.breaker.open") == {}


# --- span events -------------------------------------------------------------


@pytest.mark.usefixtures("observer")
def test_a_denial_adds_an_event_to_the_current_span_and_an_admission_none(spans):
    tracer, exporter = spans
    limiter = Limiter(1, 60, backend=MemoryBackend())
    with tracer.start_as_current_span("admitted"):
        assert limiter.hit(IDENTITY).allowed
    with tracer.start_as_current_span("denied"):
        decision = limiter.hit(IDENTITY)
    admitted, denied = exporter.get_finished_spans()
    assert admitted.events == ()
    [event] = denied.events
    assert event.name == "luathrottle.denied"
    assert dict(event.attributes) == {
        "limit": "1/60s",
        **LIMITER,
        "outcome": "denied",
        "key": limiter.state_keys(IDENTITY)[0],
        "retry_after": decision.retry_after,
    }


@pytest.mark.usefixtures("observer")
def test_every_kind_of_denial_adds_a_span_event(spans):
    tracer, exporter = spans
    cached = Limiter(1, 60, backend=MemoryBackend(), cache_denials=True)
    shadowed = Limiter(1, 60, backend=MemoryBackend(), shadow=True)
    leases = ConcurrencyLimiter(1, lease=10, backend=MemoryBackend())
    with tracer.start_as_current_span("request"):
        for _ in range(3):
            cached.hit(IDENTITY)
        for _ in range(2):
            shadowed.hit(IDENTITY)
        leases.acquire(IDENTITY)
        refused = leases.acquire(IDENTITY)
    [span] = exporter.get_finished_spans()
    assert [event.attributes["outcome"] for event in span.events] == [
        "denied",
        "denied_from_cache",
        "shadow_denied",
        "lease_refused",
    ]
    lease_event = span.events[-1].attributes
    assert lease_event["key"] == leases.state_key(IDENTITY)
    assert lease_event["retry_after"] == refused.retry_after


def test_the_span_of_the_observers_context_gets_the_event(recorded, spans):
    tracer, exporter = spans
    observer = OtelObserver(meter_provider=recorded.provider)
    limiter = Limiter(1, 60, backend=MemoryBackend(), observers=[observer])
    try:
        limiter.hit(IDENTITY)
        span = tracer.start_span("request")
        with trace.use_span(span, end_on_exit=True):
            limiter.hit(IDENTITY)
        limiter.hit(IDENTITY)  # no span: nothing to add to
    finally:
        observer.close()
    [finished] = exporter.get_finished_spans()
    assert [event.name for event in finished.events] == ["luathrottle.denied"]


@pytest.mark.usefixtures("observer")
def test_a_denial_outside_any_span_raises_nothing(recorded, spans, caplog):
    _, exporter = spans
    limiter = Limiter(1, 60, backend=MemoryBackend())
    with caplog.at_level(logging.INFO, logger="luathrottle"):
        assert [limiter.hit(IDENTITY).allowed for _ in range(2)] == [True, False]
    assert not [r for r in caplog.records if "observer" in r.getMessage()]
    assert exporter.get_finished_spans() == ()
    assert len(recorded.values("luathrottle.decisions")) == 2


# --- identities --------------------------------------------------------------


def test_no_raw_identity_reaches_metrics_or_spans(recorded, spans):
    tracer, exporter = spans
    observer = OtelObserver(meter_provider=recorded.provider)
    # Even an observer allowed to see identities records none.
    add_observer(observer, identities=True)
    try:
        with tracer.start_as_current_span("request"):
            cached = Limiter(1, 60, backend=MemoryBackend(), cache_denials=True)
            for _ in range(3):
                cached.hit(IDENTITY)
            leases = ConcurrencyLimiter(1, lease=10, backend=MemoryBackend())
            leases.acquire(IDENTITY)
            leases.acquire(IDENTITY)
            Limiter(1, 60, backend=dead_store(), on_failure="allow").hit(IDENTITY)
    finally:
        observer.close()
    values = [
        str(value)
        for metric in recorded.metrics()
        for point in metric.data.data_points
        for value in point.attributes.values()
    ]
    [span] = exporter.get_finished_spans()
    values += [
        str(value) for event in span.events for value in event.attributes.values()
    ]
    outcomes = {v for v in values if v in {"denied", "lease_refused", "failed_open"}}
    assert outcomes == {"denied", "lease_refused", "failed_open"}
    assert not [value for value in values if "alice" in value]


@pytest.mark.usefixtures("switching")
def test_threads_count_each_hit_once(recorded):
    # Each admitted hit is folded as it comes, from whichever thread: two
    # folds at once must not both take one hit.
    observer = OtelObserver(meter_provider=recorded.provider)
    limiter = Limiter(100_000, 60, backend=MemoryBackend(), observers=[observer])
    try:
        hit_from_threads(limiter, threads=4, hits=1000)
    finally:
        observer.close()
    admitted = labels(limit="100000/60s", outcome="admitted", **LIMITER)
    assert recorded.values("luathrottle.decisions")[admitted] == 4000
    stored = recorded.points("luathrottle.store.duration")[labels(**LIMITER)]
    assert stored.count == 4000
