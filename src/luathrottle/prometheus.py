"""Prometheus metrics of every decision: ``PrometheusObserver``.

Add one observer to the process, and every limiter and throttle counts its
decisions in the registry it was given (prometheus-client's ``REGISTRY`` by
default)::

    luathrottle.add_observer(PrometheusObserver())

or, in Django, ``LUATHROTTLE = {"observers":
["luathrottle.prometheus.PrometheusObserver"]}``. The instruments:

``luathrottle_decisions_total`` (``limit``, ``algorithm``, ``door``, ``outcome``)
    Every decision, leases given back included.
``luathrottle_store_seconds`` (``algorithm``, ``door``)
    A histogram of the store calls' seconds, of the decisions that made one.
``luathrottle_breaker_open`` (``store``)
    1 while a circuit breaker of the store is open or half-open, 0 once
    closed; a store shows once its breaker first opens.
``luathrottle_denial_cache_answers_total`` (``limit``, ``algorithm``, ``door``)
    Hits the denial cache denied without asking the store.
``luathrottle_store_failures_total`` (``algorithm``, ``door``, ``error``)
    Decisions the failure policy made, by the error's class.

No label holds an identity or a key. One registry takes one observer: a
second raises ``ValueError``.

In one process a decision's store call time is appended to a list, which
threads share without a lock, and a thousand of them at a time are sorted
and bucketed under one; the registry reads the counts when scraped. That
takes a seventh of the instructions that updating prometheus-client's
counter and histogram at each decision does (callgrind: 2,200 against
16,700). In prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``) the observer updates prometheus-client's own
metrics instead, which write the files that
``prometheus_client.multiprocess.MultiProcessCollector`` reads.
"""

import os
import threading
import weakref
from bisect import bisect_right
from collections.abc import Iterable

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
    from prometheus_client.utils import floatToGoString
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "luathrottle.prometheus needs prometheus-client: "
        "pip install 'luathrottle[prometheus]'"
    ) from exc

from luathrottle._breaker import CircuitBreaker, State, watch
from luathrottle._events import DecisionEvent, Outcome

__all__ = ["PrometheusObserver"]

#: What decisions are counted by: an event's first four fields.
_Labels = tuple[str, str, str, Outcome]

_DECISIONS = "luathrottle_decisions_total"
_DECISIONS_HELP = "Decisions of luathrottle's limiters and throttles."
_DECISION_LABELS = ("limit", "algorithm", "door", "outcome")
_SECONDS = "luathrottle_store_seconds"
_SECONDS_HELP = "Seconds each store call of a decision took."
_SECONDS_LABELS = ("algorithm", "door")
_BREAKER = "luathrottle_breaker_open"
_BREAKER_HELP = "1 while a circuit breaker of the store is open or half-open."
_ANSWERS = "luathrottle_denial_cache_answers_total"
_ANSWERS_HELP = "Hits the denial cache denied without asking the store."
_ANSWER_LABELS = ("limit", "algorithm", "door")
_FAILURES = "luathrottle_store_failures_total"
_FAILURES_HELP = "Decisions the failure policy made when the store failed."
_FAILURE_LABELS = ("algorithm", "door", "error")

#: Upper bounds of the store call histogram, in seconds. The embedded store
#: answers in microseconds and Redis on the same host in 50 to 200 µs, one
#: across a network in a millisecond or a few; past 100 ms a call is a
#: stalled store, and a second is as long as any sane socket timeout waits.
#: Buckets 2.5 times apart tell these apart without a series per octave.
_BOUNDS = (
    0.00001,
    0.000025,
    0.00005,
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
    float("inf"),
)
#: How many timings of one label tuple wait to be bucketed at most: their
#: list takes 8 KiB at most.
_FOLDED = 1024

_LE = tuple(floatToGoString(bound) for bound in _BOUNDS)  # type: ignore[no-untyped-call]


def _multiprocess() -> bool:
    """Whether prometheus-client keeps its metrics in files, shared by the
    worker processes of a server; it reads the lower-case name too, long
    deprecated."""
    return any(
        name in os.environ
        for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
    )


class PrometheusObserver(Collector):
    """An observer that counts every decision in Prometheus metrics.

    Add it with ``luathrottle.add_observer``, or name it in
    ``LUATHROTTLE["observers"]``; it is also a prometheus-client collector,
    registered on ``registry`` when made.

    Args:
        registry: the ``CollectorRegistry`` that shows the metrics;
            prometheus-client's ``REGISTRY`` by default.

    Raises:
        ValueError: ``registry`` already holds luathrottle's metrics,
            another observer's.
    """

    def __new__(cls, registry: CollectorRegistry | None = None) -> "PrometheusObserver":
        # Worker processes share metrics only through prometheus-client's
        # own, which write its files.
        if cls is PrometheusObserver and _multiprocess():
            cls = _SharedObserver
        return super().__new__(cls)

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._lock = threading.Lock()
        #: The breakers of each store that are not closed.
        self._open: dict[str, weakref.WeakSet[CircuitBreaker]] = {}
        # A Gauge in both modes: it changes once per breaker change, and
        # across workers the store is shown open while any live worker's
        # breaker is (livemax); a dead worker's breaker no longer guards
        # anything, and gunicorn's child_exit hook forgets it.
        self._breakers = Gauge(
            _BREAKER,
            _BREAKER_HELP,
            ["store"],
            registry=None,
            multiprocess_mode="livemax",
        )
        self._start_counting()
        chosen = REGISTRY if registry is None else registry
        try:
            chosen.register(self)
        except ValueError as exc:
            raise ValueError(
                "this registry holds luathrottle's metrics already, another "
                "PrometheusObserver's: add one PrometheusObserver per registry "
                "to luathrottle, or give each its own "
                "prometheus_client.CollectorRegistry()"
            ) from exc
        _watching.add(self)

    def _start_counting(self) -> None:
        self._rows: dict[_Labels, list[float]] = {}
        self._timings: dict[_Labels, list[float]] = {}
        self._failures: dict[tuple[str, str, str], int] = {}

    def __call__(self, event: DecisionEvent) -> None:
        """Count ``event``."""
        self.tally(event[0], event[1], event[2], event[3], event[6])
        if event[9] is not None:
            self._failed(event)

    def tally(
        self,
        door: str,
        limit: str,
        algorithm: str,
        outcome: Outcome,
        latency: float | None,
    ) -> None:
        """Count a decision by its labels and store call's ``latency``: what
        the engine tells of an admitted hit, without building its event."""
        # Hot: a timed decision is one append, which threads may make to one
        # list without a lock. Bucketing a thousand sorted timings at once
        # costs a sixth of bucketing each alone.
        labels = (door, limit, algorithm, outcome)
        if latency is None:
            self._untimed(labels)
            return
        timings = self._timings.get(labels)
        if timings is None:
            timings = self._timings_of(labels)
        timings.append(latency)
        if len(timings) >= _FOLDED:
            self._fold(labels, timings)

    def _timings_of(self, labels: _Labels) -> list[float]:
        with self._lock:
            self._row(labels)
            return self._timings.setdefault(labels, [])

    def _row(self, labels: _Labels) -> list[float]:
        """The counts of the decisions labelled ``labels``, under the lock:
        how many made no store call, the sum of the others' latencies, and
        how many of those fell in each bucket."""
        return self._rows.setdefault(labels, [0, 0.0, *[0] * len(_BOUNDS)])

    def _untimed(self, labels: _Labels) -> None:
        with self._lock:
            self._row(labels)[0] += 1

    def _fold(self, labels: _Labels, timings: list[float]) -> None:
        """Count the ``timings`` of ``labels`` appended so far in its row, and
        forget them."""
        with self._lock:
            # Copying and deleting are each one step that no append splits:
            # one made between them stays, to be folded next time.
            taken = timings[:]
            del timings[: len(taken)]
            taken.sort()
            row = self._row(labels)
            row[1] += sum(taken)
            below = 0
            for index, bound in enumerate(_BOUNDS, 2):
                upto = bisect_right(taken, bound)
                row[index] += upto - below
                below = upto

    def _failed(self, event: DecisionEvent) -> None:
        key = (event.algorithm, event.door, type(event.error).__name__)
        with self._lock:
            self._failures[key] = self._failures.get(key, 0) + 1

    def _breaker_changed(self, breaker: CircuitBreaker, state: State) -> None:
        with self._lock:
            opened = self._open.setdefault(breaker.store, weakref.WeakSet())
            if state == "closed":
                opened.discard(breaker)
            else:
                opened.add(breaker)
            self._breakers.labels(breaker.store).set(1 if opened else 0)

    def describe(self) -> Iterable[Metric]:
        """The metrics, without samples: what the registry checks clashes
        by."""
        return [*_families(), *self._breakers.describe()]

    def collect(self) -> Iterable[Metric]:
        """The metrics and their samples, as counted so far."""
        with self._lock:
            pending = list(self._timings.items())
        for counted_by, timings in pending:
            self._fold(counted_by, timings)
        with self._lock:
            rows = [(key, row.copy()) for key, row in self._rows.items()]
            failures = list(self._failures.items())
        decisions, seconds, answers, failed = _families()
        by_store_call: dict[tuple[str, str], list[float]] = {}
        for (door, limit, algorithm, outcome), row in rows:
            count = row[0] + sum(row[2:])
            decisions.add_metric([limit, algorithm, door, str(outcome)], count)
            if outcome == Outcome.DENIED_FROM_CACHE:
                answers.add_metric([limit, algorithm, door], count)
            summed = by_store_call.setdefault((algorithm, door), [0.0] * len(row))
            for index, value in enumerate(row):
                summed[index] += value
        for labels, summed in by_store_call.items():
            counted = 0.0
            buckets = []
            for le, value in zip(_LE, summed[2:], strict=True):
                counted += value
                buckets.append((le, counted))
            if counted:
                seconds.add_metric(list(labels), buckets, summed[1])
        for failure, count in failures:
            failed.add_metric(list(failure), count)
        return [decisions, seconds, answers, failed, *self._breakers.collect()]


def _families() -> tuple[
    CounterMetricFamily, HistogramMetricFamily, CounterMetricFamily, CounterMetricFamily
]:
    """The counted metrics, without samples yet."""
    return (
        CounterMetricFamily(_DECISIONS, _DECISIONS_HELP, labels=_DECISION_LABELS),
        HistogramMetricFamily(_SECONDS, _SECONDS_HELP, labels=_SECONDS_LABELS),
        CounterMetricFamily(_ANSWERS, _ANSWERS_HELP, labels=_ANSWER_LABELS),
        CounterMetricFamily(_FAILURES, _FAILURES_HELP, labels=_FAILURE_LABELS),
    )


class _SharedObserver(PrometheusObserver):
    """``PrometheusObserver`` in prometheus-client's multiprocess mode:
    it updates prometheus-client's metrics, which write the files the
    workers share."""

    def _start_counting(self) -> None:
        self._decisions = Counter(
            _DECISIONS, _DECISIONS_HELP, _DECISION_LABELS, registry=None
        )
        self._seconds = Histogram(
            _SECONDS, _SECONDS_HELP, _SECONDS_LABELS, registry=None, buckets=_BOUNDS
        )
        self._answers = Counter(_ANSWERS, _ANSWERS_HELP, _ANSWER_LABELS, registry=None)
        self._errors = Counter(
            _FAILURES, _FAILURES_HELP, _FAILURE_LABELS, registry=None
        )
        #: Each label tuple's children: decisions, store seconds, and denial
        #: cache answers when the outcome is one.
        self._children: dict[_Labels, tuple[Counter, Histogram, Counter | None]] = {}

    def __call__(self, event: DecisionEvent) -> None:
        """Count ``event``."""
        self.tally(event[0], event[1], event[2], event[3], event[6])
        if event.error is not None:
            error = type(event.error).__name__
            self._errors.labels(event.algorithm, event.door, error).inc()

    def tally(
        self,
        door: str,
        limit: str,
        algorithm: str,
        outcome: Outcome,
        latency: float | None,
    ) -> None:
        """Count a decision by its labels and store call's ``latency``."""
        labels = (door, limit, algorithm, outcome)
        children = self._children.get(labels)
        if children is None:
            children = self._children_of(labels)
        decisions, seconds, answers = children
        decisions.inc()
        if latency is not None:
            seconds.observe(latency)
        if answers is not None:
            answers.inc()

    def _children_of(
        self, labels: _Labels
    ) -> tuple[Counter, Histogram, Counter | None]:
        door, limit, algorithm, outcome = labels
        answers = None
        if outcome == Outcome.DENIED_FROM_CACHE:
            answers = self._answers.labels(limit, algorithm, door)
        children = (
            self._decisions.labels(limit, algorithm, door, str(outcome)),
            self._seconds.labels(algorithm, door),
            answers,
        )
        # Racing threads find the same children: labels() makes each once.
        self._children[labels] = children
        return children

    def describe(self) -> Iterable[Metric]:
        """The metrics, without samples."""
        return [
            *self._decisions.describe(),
            *self._seconds.describe(),
            *self._answers.describe(),
            *self._errors.describe(),
            *self._breakers.describe(),
        ]

    def collect(self) -> Iterable[Metric]:
        """This process's metrics; ``MultiProcessCollector`` reads every
        worker's from their files."""
        return [
            *self._decisions.collect(),
            *self._seconds.collect(),
            *self._answers.collect(),
            *self._errors.collect(),
            *self._breakers.collect(),
        ]


#: The observers that hear of the breakers' changes, forgotten with them.
_watching: "weakref.WeakSet[PrometheusObserver]" = weakref.WeakSet()


def _breaker_changed(breaker: CircuitBreaker, state: State) -> None:
    for observer in list(_watching):
        observer._breaker_changed(breaker, state)


watch(_breaker_changed)
