"""One traffic through every door, counted three ways: Prometheus, OTel and
the observer events must agree with each other, and with the store.

Each door (``tests/test_every_door.py``'s) gets the same traffic: three
requests on a limit of one, enforced, then three in shadow mode, then one
on a dead store that fails open.
"""

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

import luathrottle
from luathrottle import Outcome
from luathrottle.backends.memory import MemoryBackend
from luathrottle.otel import OtelObserver
from luathrottle.prometheus import PrometheusObserver
from test_every_door import ASYNC_DOORS, DOORS, dead

LABELS = ("door", "limit", "algorithm", "outcome")


@pytest.fixture
def counted() -> Iterator[tuple[list[Any], CollectorRegistry, InMemoryMetricReader]]:
    events: list[Any] = []
    registry = CollectorRegistry()
    reader = InMemoryMetricReader()
    observers = [
        events.append,
        PrometheusObserver(registry=registry),
        OtelObserver(meter_provider=MeterProvider(metric_readers=[reader])),
    ]
    for observer in observers:
        luathrottle.add_observer(observer)
    with override_settings(
        LUATHROTTLE={"allow_unsafe_cache": None},
        REST_FRAMEWORK={"EXCEPTION_HANDLER": "luathrottle.drf.exception_handler"},
    ):
        yield events, registry, reader
    for observer in observers:
        luathrottle.remove_observer(observer)


def prometheus_counts(registry: CollectorRegistry) -> Counter[tuple[str, ...]]:
    found: Counter[tuple[str, ...]] = Counter()
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "luathrottle_decisions_total":
                found[tuple(sample.labels[name] for name in LABELS)] += int(
                    sample.value
                )
    return found


def otel_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def test_every_door_is_counted_alike_by_events_prometheus_otel_and_the_store(counted):
    events, registry, reader = counted
    for door in DOORS:
        send = door.build(MemoryBackend(), "allow")
        for _ in range(3):
            send()
        shadowed = door.build(MemoryBackend(), "allow", shadow=True)
        for _ in range(3):
            shadowed()
        door.build(dead("async" if door.name in ASYNC_DOORS else "sync"), "allow")()

    by_events = Counter(tuple(str(part) for part in event[:4]) for event in events)
    assert by_events == prometheus_counts(registry)
    by_otel: Counter[tuple[str, ...]] = Counter()
    for point in otel_points(reader, "luathrottle.decisions"):
        by_otel[tuple(str(point.attributes[name]) for name in LABELS)] += point.value
    assert by_otel == by_events

    # Every door is there, with every outcome its traffic makes.
    doors = {key[0] for key in by_events}
    assert doors == {
        "limiter",
        "django",
        "drf",
        "dmr",
        "asgi",
        "fastapi",
        "flask",
        "concurrency",
    }
    outcomes = Counter(key[3] for key in by_events.elements())
    assert outcomes[Outcome.SHADOW_DENIED] > 0
    assert outcomes[Outcome.FAILED_OPEN] == len(DOORS)

    # The store agrees: each enforced run admitted as many hits as its
    # limit, and the store counted none left after them.
    admitted = [
        e for e in events if e.outcome == Outcome.ADMITTED and e.door != "concurrency"
    ]
    assert {e.remaining for e in admitted} == {0}

    # Store latency: one observation per event the store decided.
    timed = sum(1 for e in events if e.latency is not None)
    seconds = sum(
        sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "luathrottle_store_seconds_count"
    )
    assert seconds == timed
    assert (
        sum(p.count for p in otel_points(reader, "luathrottle.store.duration")) == timed
    )
