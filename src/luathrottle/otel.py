"""OpenTelemetry metrics of every decision, and an event on the request's
span for every denial: ``pip install 'luathrottle[otel]'``.

``OtelObserver`` is an observer (``luathrottle.add_observer``, a decider's
``observers=``, or Django's ``LUATHROTTLE["observers"]``) that records, on
a meter named ``luathrottle``:

- ``luathrottle.decisions``: a counter of decisions, by ``limit``,
  ``algorithm``, ``door`` and ``outcome``;
- ``luathrottle.store.duration``: a histogram of the seconds each store
  call took, by ``algorithm`` and ``door``;
- ``luathrottle.denial_cache.answers``: a counter of hits the denial cache
  denied without asking the store, by ``limit``, ``algorithm`` and ``door``;
- ``luathrottle.store.failures``: a counter of decisions the failure policy
  made, by ``algorithm``, ``door`` and ``error`` (the error's class name);
- ``luathrottle.breaker.open``: a gauge by ``store``, 1 from the moment a
  store's circuit breaker opens until it closes again, then 0.

The three counters are observable counters: the observer counts, and the
SDK reads the counts when it collects; they export as any counter does.

A denial (``denied``, ``denied_from_cache``, ``lease_refused`` or
``shadow_denied``) also adds a ``luathrottle.denied`` event to the current
span, when it records: observers are called in the request's context, so
that is the request's span. The event names the limit, door, algorithm and
outcome, the hashed state key and ``retry_after`` when known.

Neither metrics nor span events ever carry a raw identity.
"""

import threading
from collections.abc import Iterable
from importlib import metadata
from typing import Any

try:
    from opentelemetry import metrics, trace
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "luathrottle.otel needs opentelemetry-api: pip install 'luathrottle[otel]'"
    ) from exc

from luathrottle._breaker import CircuitBreaker, unwatch, watch
from luathrottle._events import (
    DENIALS,
    DecisionEvent,
    Labels,
    Outcome,
    add,
    remove_observer,
    taken,
)

__all__ = ["OtelObserver"]

#: Upper bounds of the store duration's buckets, in seconds. A Redis round
#: trip takes well under a millisecond; the SDK's default bounds, made for
#: milliseconds, would put every call in the first bucket.
_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

_Attributes = dict[str, str]


class _Counts:
    """What one label tuple (``event[:4]``) was counted, and the attribute
    dicts its measurements take, built once: ``OtelObserver``'s tally of
    those labels, which records each hit the engine hands it at once."""

    __slots__ = (
        "_durations",
        "_lock",
        "answered",
        "attributes",
        "count",
        "denial",
        "pending",
        "stored",
    )

    most = 1

    def __init__(
        self,
        labels: Labels,
        lock: threading.Lock,
        durations: metrics.Histogram,
    ) -> None:
        door, limit, algorithm, outcome = (str(label) for label in labels)
        counted = {"limit": limit, "algorithm": algorithm, "door": door}
        self.attributes = {**counted, "outcome": outcome}
        self.stored = {"algorithm": algorithm, "door": door}
        self.answered = counted if outcome == Outcome.DENIED_FROM_CACHE else None
        self.denial = outcome in DENIALS
        self.count = 0
        self.pending: list[float] = []
        self._lock, self._durations = lock, durations

    def fold(self) -> None:
        """Count the pending hits, and record their store call seconds."""
        with self._lock:
            hits = taken(self.pending)
            self.count += len(hits)
        for latency in hits:
            self._durations.record(latency, self.stored)


class _Failures:
    """The failures of one door, algorithm and kind of error."""

    __slots__ = ("attributes", "count")

    def __init__(self, attributes: _Attributes) -> None:
        self.attributes = attributes
        self.count = 0


def _version() -> str | None:
    try:
        return metadata.version("luathrottle")
    except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        return None


class OtelObserver:
    """Records every decision it is given on OpenTelemetry instruments, and
    every denial as an event of the current span; see the module.

    The counters are observable, and counted here: one measurement through
    the SDK costs about twice what a whole decision on the embedded backend
    does, and every decision is counted. The store duration has no
    observable kind, so each timed decision pays for one.

    Args:
        meter_provider: where the instruments live; the global one
            (``opentelemetry.metrics.get_meter_provider()``) by default.

    Raises:
        TypeError: ``meter_provider`` is not a ``MeterProvider``.
    """

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        if meter_provider is None:
            meter_provider = metrics.get_meter_provider()
        if not isinstance(meter_provider, metrics.MeterProvider):
            raise TypeError(
                f"meter_provider must be an OpenTelemetry MeterProvider, "
                f"got {meter_provider!r}"
            )
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str, Outcome], _Counts] = {}
        self._failures: dict[tuple[str, str, type[Any]], _Failures] = {}
        meter = meter_provider.get_meter("luathrottle", _version())
        meter.create_observable_counter(
            "luathrottle.decisions",
            [self._decisions],
            unit="{decision}",
            description="Rate-limiting decisions, by limit, door and outcome.",
        )
        self._durations = meter.create_histogram(
            "luathrottle.store.duration",
            unit="s",
            description="Seconds each store call of a decision took.",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        meter.create_observable_counter(
            "luathrottle.denial_cache.answers",
            [self._answers],
            unit="{answer}",
            description="Hits the denial cache denied without asking the store.",
        )
        meter.create_observable_counter(
            "luathrottle.store.failures",
            [self._store_failures],
            unit="{failure}",
            description="Decisions the failure policy made, the store having failed.",
        )
        self._breakers = meter.create_gauge(
            "luathrottle.breaker.open",
            description="1 while a store's circuit breaker is open, else 0.",
        )
        # One bound method, kept: ``unwatch`` finds a watcher by identity.
        self._watcher = self._breaker_changed
        watch(self._watcher)

    def __call__(self, event: DecisionEvent) -> None:
        """Record ``event``."""
        counts = self._count(event[0], event[1], event[2], event[3], event[6])
        if event.error is not None:
            self._failed(event)
        if counts.denial:
            _add_span_event(event, counts.attributes)

    def tally_for(
        self, door: str, limit: str, algorithm: str, outcome: Outcome
    ) -> _Counts:
        """The counts of the decisions of these labels, to which the engine
        hands admitted hits (``luathrottle._events.Tally``)."""
        labels = (door, limit, algorithm, outcome)
        counts = self._counts.get(labels)
        if counts is None:
            with self._lock:
                found = _Counts(labels, self._lock, self._durations)
                counts = self._counts.setdefault(labels, found)
        return counts

    def _count(
        self,
        door: str,
        limit: str,
        algorithm: str,
        outcome: Outcome,
        latency: float | None,
    ) -> _Counts:
        counts = self.tally_for(door, limit, algorithm, outcome)
        if latency is None:
            with self._lock:
                counts.count += 1
        else:
            add(counts, latency)
        return counts

    def close(self) -> None:
        """Stop: no more decisions from the process (``remove_observer``),
        and no more changes of circuit breakers. A decider that was given
        this observer in its ``observers=`` still reports to it; what was
        counted stays counted."""
        remove_observer(self)
        unwatch(self._watcher)

    def _failed(self, event: DecisionEvent) -> None:
        kind = type(event.error)
        found = (event.door, event.algorithm, kind)
        with self._lock:
            failures = self._failures.get(found)
            if failures is None:
                attributes = {
                    "algorithm": event.algorithm,
                    "door": event.door,
                    "error": kind.__name__,
                }
                failures = self._failures[found] = _Failures(attributes)
            failures.count += 1

    def _breaker_changed(self, breaker: CircuitBreaker, state: str) -> None:
        # Half-open, it still refuses every call but one trial.
        self._breakers.set(0 if state == "closed" else 1, {"store": breaker.store})

    def _counted(self) -> list[tuple[int, _Counts]]:
        with self._lock:
            return [(counts.count, counts) for counts in self._counts.values()]

    def _decisions(
        self, options: metrics.CallbackOptions
    ) -> Iterable[metrics.Observation]:
        return [
            metrics.Observation(n, counts.attributes) for n, counts in self._counted()
        ]

    def _answers(
        self, options: metrics.CallbackOptions
    ) -> Iterable[metrics.Observation]:
        return [
            metrics.Observation(n, counts.answered)
            for n, counts in self._counted()
            if counts.answered is not None
        ]

    def _store_failures(
        self, options: metrics.CallbackOptions
    ) -> Iterable[metrics.Observation]:
        with self._lock:
            return [
                metrics.Observation(failures.count, failures.attributes)
                for failures in self._failures.values()
            ]


def _add_span_event(event: DecisionEvent, decided: _Attributes) -> None:
    span = trace.get_current_span()
    if not span.is_recording():
        return
    details: dict[str, str | float] = {**decided, "key": event.key}
    if event.retry_after is not None:
        details["retry_after"] = event.retry_after
    span.add_event("luathrottle.denied", details)
