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

In one process the engine appends an admitted hit's store call time to the
list of its labels (the observer's tally, ``tally_for``), which threads
share without a lock, and a thousand of them at a time are sorted and
bucketed under one; the registry reads the counts when scraped, folding
what is pending first. Updating prometheus-client's counter and histogram
at each decision would cost a third of the embedded store's whole hit
(callgrind: 16,700 instructions against 43,000). In prometheus-client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) the observer updates
prometheus-client's own metrics instead, at each hit, which write the
files that ``prometheus_client.multiprocess.MultiProcessCollector`` reads.
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
from luathrottle._events import DecisionEvent, Labels, Outcome, add, taken

__all__ = ["PrometheusObserver"]

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
        self._series: dict[Labels, _Series] = {}
        self._failures: dict[tuple[str, str, str], int] = {}

    def __call__(self, event: DecisionEvent) -> None:
        """Count ``event``."""
        series = self.tally_for(event[0], event[1], event[2], event[3])
        if event[6] is None:
            with self._lock:
                series.row[0] += 1
        else:
            add(series, event[6])
        if event[9] is not None:
            self._failed(event)

    def tally_for(
        self, door: str, limit: str, algorithm: str, outcome: Outcome
    ) -> "_Series":
        """The counts of the decisions of these labels, to which the
        engine hands admitted hits (``luathrottle._events.Tally``)."""
        labels = (door, limit, algorithm, outcome)
        series = self._series.get(labels)
        if series is None:
            with self._lock:
                series = self._series.setdefault(labels, _Series(self._lock))
        return series

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
            series = list(self._series.items())
        for _, tally in series:
            tally.fold()
        with self._lock:
            rows = [(labels, tally.row.copy()) for labels, tally in series]
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


class _Series:
    """The decisions of one tuple of labels: ``PrometheusObserver``'s tally
    of them. ``row`` holds how many made no store call, the sum of the
    others' seconds, and how many of those fell in each bucket."""

    __slots__ = ("_lock", "pending", "row")

    #: Timings wait to be bucketed until this many: a list of 8 KiB at
    #: most. Bucketing a thousand sorted timings at once costs a sixth of
    #: bucketing each alone.
    most = 1024

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self.pending: list[float] = []
        self.row: list[float] = [0, 0.0, *[0] * len(_BOUNDS)]

    def fold(self) -> None:
        """Count the pending timings in ``row``, and forget them."""
        with self._lock:
            hits = taken(self.pending)
            hits.sort()
            row = self.row
            row[1] += sum(hits)
            below = 0
            for index, bound in enumerate(_BOUNDS, 2):
                upto = bisect_right(hits, bound)
                row[index] += upto - below
                below = upto


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
        #: Each label tuple's tally, which updates its children.
        self._shared: dict[Labels, _SharedSeries] = {}

    def __call__(self, event: DecisionEvent) -> None:
        """Count ``event``."""
        series = self.tally_for(event[0], event[1], event[2], event[3])
        series.decisions.inc()
        if event[6] is not None:
            series.seconds.observe(event[6])
        if series.answers is not None:
            series.answers.inc()
        if event.error is not None:
            error = type(event.error).__name__
            self._errors.labels(event.algorithm, event.door, error).inc()

    def tally_for(  # type: ignore[override]
        self, door: str, limit: str, algorithm: str, outcome: Outcome
    ) -> "_SharedSeries":
        """The children of these labels, which count each hit the engine
        hands them at once: the files are what other processes read."""
        labels = (door, limit, algorithm, outcome)
        series = self._shared.get(labels)
        if series is None:
            answers = None
            if outcome == Outcome.DENIED_FROM_CACHE:
                answers = self._answers.labels(limit, algorithm, door)
            series = _SharedSeries(
                self._decisions.labels(limit, algorithm, door, str(outcome)),
                self._seconds.labels(algorithm, door),
                answers,
            )
            # Racing threads find the same children: labels() makes each
            # once.
            series = self._shared.setdefault(labels, series)
        return series

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


class _SharedSeries:
    """``_SharedObserver``'s tally of one tuple of labels: its children."""

    __slots__ = ("_lock", "answers", "decisions", "pending", "seconds")

    most = 1

    def __init__(
        self, decisions: Counter, seconds: Histogram, answers: Counter | None
    ) -> None:
        self.decisions, self.seconds, self.answers = decisions, seconds, answers
        self.pending: list[float] = []
        self._lock = threading.Lock()

    def fold(self) -> None:
        """Count the pending hits in the children."""
        with self._lock:
            hits = taken(self.pending)
        self.decisions.inc(len(hits))
        if self.answers is not None:
            self.answers.inc(len(hits))
        for latency in hits:
            self.seconds.observe(latency)


#: The observers that hear of the breakers' changes, forgotten with them.
_watching: "weakref.WeakSet[PrometheusObserver]" = weakref.WeakSet()


def _breaker_changed(breaker: CircuitBreaker, state: State) -> None:
    for observer in list(_watching):
        observer._breaker_changed(breaker, state)


watch(_breaker_changed)
