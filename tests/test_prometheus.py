"""``luathrottle.prometheus``: every outcome counted, store calls timed,
breakers shown, on a registry of each test's own; and the same counts in
prometheus-client's multiprocess mode."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import prometheus_client
import pytest
from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from prometheus_client import CollectorRegistry

import luathrottle
from luathrottle import CircuitBreaker, ConcurrencyLimiter, Limiter
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from luathrottle.django import SyncThrottle, throttle
from luathrottle.prometheus import PrometheusObserver
from servers import free_port
from threads import hit_from_threads

TESTS = Path(__file__).resolve().parent
DECISIONS = "luathrottle_decisions_total"
SECONDS = "luathrottle_store_seconds"


@pytest.fixture
def registry():
    """A registry of the test's own, counting every decision of the process
    while the test runs."""
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    luathrottle.add_observer(observer)
    yield registry
    luathrottle.remove_observer(observer)


def decisions(registry, limit, outcome, door="limiter", algorithm="fixed_window"):
    labels = {"limit": limit, "algorithm": algorithm, "door": door}
    value = registry.get_sample_value(DECISIONS, {**labels, "outcome": outcome})
    return 0 if value is None else value


def by_outcome(registry, limit, door="limiter", algorithm="fixed_window"):
    """Every outcome counted for ``limit``, zeros left out."""
    counted = {
        outcome: decisions(registry, limit, outcome, door, algorithm)
        for outcome in luathrottle.Outcome
    }
    return {outcome: value for outcome, value in counted.items() if value}


def hand(observer, latency, limit="5/60s", outcome=luathrottle.Outcome.ADMITTED):
    """Hand an admitted hit to the observer's tally as the engine does
    (``_events.Tally``): append its time, and fold once the tally is full."""
    tally = observer.tally_for("limiter", limit, "fixed_window", outcome)
    tally.pending.append(latency)
    if len(tally.pending) >= tally.most:
        tally.fold()


def dead_store(breaker=False):
    return SyncRedis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", timeout=0.2, breaker=breaker
    )


def test_admitted_and_denied_hits_are_counted_by_limit(registry):
    limiter = Limiter(2, 60, backend=MemoryBackend())
    for _ in range(3):
        limiter.hit("k")
    limiter.peek("k")  # decides nothing: not counted
    assert by_outcome(registry, "2/60s") == {"admitted": 2, "denied": 1}


def test_denial_cache_answers_are_counted_and_not_timed(registry):
    limiter = Limiter(1, 60, backend=MemoryBackend(), cache_denials=True)
    for _ in range(4):
        limiter.hit("k")
    assert by_outcome(registry, "1/60s") == {
        "admitted": 1,
        "denied": 1,
        "denied_from_cache": 2,
    }
    labels = {"limit": "1/60s", "algorithm": "fixed_window", "door": "limiter"}
    answers = registry.get_sample_value(
        "luathrottle_denial_cache_answers_total", labels
    )
    assert answers == 2
    # Only the two hits the store decided made a store call.
    timed = {"algorithm": "fixed_window", "door": "limiter"}
    assert registry.get_sample_value(f"{SECONDS}_count", timed) == 2


def test_a_dead_store_counts_failures_by_error(registry):
    limiter = Limiter(2, 60, backend=dead_store(), on_failure="allow")
    for _ in range(3):
        assert limiter.hit("k").allowed
    assert by_outcome(registry, "2/60s") == {"failed_open": 3}
    labels = {"algorithm": "fixed_window", "door": "limiter", "error": "BackendError"}
    assert registry.get_sample_value("luathrottle_store_failures_total", labels) == 3
    # A failed call is a store call too.
    timed = {"algorithm": "fixed_window", "door": "limiter"}
    assert registry.get_sample_value(f"{SECONDS}_count", timed) == 3


def test_shadow_denials_and_near_limit_hits_have_outcomes_of_their_own(registry):
    shadowed = Limiter(1, 60, backend=MemoryBackend(), shadow=True)
    near = Limiter(4, 600, backend=MemoryBackend(), near_limit=0.5)
    for _ in range(2):
        shadowed.hit("k")
    for _ in range(5):
        near.hit("k")
    assert by_outcome(registry, "1/60s") == {"admitted": 1, "shadow_denied": 1}
    # Hits that leave 1 and 0 of 4 are near the limit; the fifth is denied.
    assert by_outcome(registry, "4/600s") == {
        "admitted": 2,
        "near_limit": 2,
        "denied": 1,
    }


def test_leases_granted_refused_and_given_back_are_counted(registry):
    slots = ConcurrencyLimiter(1, lease=60, backend=MemoryBackend())
    held = slots.acquire("k")
    assert not slots.acquire("k").allowed
    assert held.release()
    counted = by_outcome(
        registry, "1 in flight", door="concurrency", algorithm="concurrency"
    )
    assert counted == {"admitted": 1, "lease_refused": 1, "lease_released": 1}


def test_the_histogram_counts_each_store_call_in_its_bucket(registry):
    limiter = Limiter(100, 60, backend=MemoryBackend())
    for _ in range(5):
        limiter.hit("k")
    timed = {"algorithm": "fixed_window", "door": "limiter"}
    assert registry.get_sample_value(f"{SECONDS}_count", timed) == 5
    assert registry.get_sample_value(f"{SECONDS}_sum", timed) > 0
    buckets = [
        sample
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == f"{SECONDS}_bucket"
    ]
    counts = [sample.value for sample in buckets]
    assert counts == sorted(counts)
    assert buckets[-1].labels["le"] == "+Inf"
    assert counts[-1] == 5
    # The embedded store answers within a second, however loaded the host.
    assert [s.value for s in buckets if s.labels["le"] == "1.0"] == [5]


def test_timings_land_in_their_buckets_across_many_folds():
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    # 0.00001 is a bucket's bound: a timing on it falls in that bucket.
    timings = [0.00001, 0.00002, 0.0003, 0.0007, 2.0] * 1001
    for latency in timings:
        hand(observer, latency)
    # A hit that made no store call is told as an event.
    observer(
        luathrottle.DecisionEvent(
            "limiter",
            "5/60s",
            "fixed_window",
            luathrottle.Outcome.ADMITTED,
            4,
            None,
            None,
            "k",
        )
    )
    timed = {"algorithm": "fixed_window", "door": "limiter"}
    buckets = {
        sample.labels["le"]: sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == f"{SECONDS}_bucket"
    }
    assert buckets["1e-05"] == 1001
    assert buckets["2.5e-05"] == 2002
    assert buckets["0.00025"] == 2002
    assert buckets["0.0005"] == 3003
    assert buckets["0.001"] == 4004
    assert buckets["1.0"] == 4004
    assert buckets["+Inf"] == 5005
    assert registry.get_sample_value(f"{SECONDS}_count", timed) == 5005
    assert registry.get_sample_value(f"{SECONDS}_sum", timed) == pytest.approx(
        sum(timings)
    )
    assert decisions(registry, "5/60s", "admitted") == 5006


def test_threads_lose_no_timing_while_scraped(switching):
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    started = threading.Barrier(5)

    def tally_many():
        started.wait()
        for _ in range(5000):
            hand(observer, 0.0001, limit="x")

    threads = [threading.Thread(target=tally_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    scraped = []
    while any(thread.is_alive() for thread in threads):
        scraped.append(decisions(registry, "x", "admitted"))
    for thread in threads:
        thread.join(timeout=120)
    assert scraped == sorted(scraped)
    assert decisions(registry, "x", "admitted") == 20_000
    timed = {"algorithm": "fixed_window", "door": "limiter"}
    assert registry.get_sample_value(f"{SECONDS}_count", timed) == 20_000


def test_threads_lose_no_count(registry):
    limiter = Limiter(100_000, 60, backend=MemoryBackend())
    hit_from_threads(limiter, threads=4, hits=500)
    assert by_outcome(registry, "100000/60s") == {"admitted": 2000}
    timed = {"algorithm": "fixed_window", "door": "limiter"}
    assert registry.get_sample_value(f"{SECONDS}_count", timed) == 2000


def test_the_breaker_gauge_follows_the_breaker(registry, redis_url, clock):
    breaker = CircuitBreaker(failures=1, cool_off=30, clock=clock)
    dead = dead_store(breaker)
    store = {"store": breaker.store}
    assert breaker.store.startswith("redis 127.0.0.1:")
    assert registry.get_sample_value("luathrottle_breaker_open", store) is None
    Limiter(5, 60, backend=dead, on_failure="allow").hit("k")
    assert breaker.state == "open"
    assert registry.get_sample_value("luathrottle_breaker_open", store) == 1
    # The store comes back: the same breaker now guards a live one.
    live = SyncRedis.from_url(redis_url, breaker=breaker)
    limiter = Limiter(5, 60, backend=live, on_failure="allow", scope="prom-breaker")
    clock.advance(30)
    assert limiter.hit("k").allowed
    assert breaker.state == "closed"
    assert registry.get_sample_value("luathrottle_breaker_open", store) == 0
    limiter.reset("k")


def test_a_store_is_open_while_any_of_its_breakers_is(registry, clock):
    first = CircuitBreaker(failures=1, cool_off=30, clock=clock)
    second = CircuitBreaker(failures=1, cool_off=30, clock=clock)
    port = free_port()
    for breaker in (first, second):
        backend = SyncRedis.from_url(
            f"redis://127.0.0.1:{port}/0", timeout=0.2, breaker=breaker
        )
        Limiter(5, 60, backend=backend, on_failure="allow").hit("k")
    store = {"store": first.store}
    assert first.store == second.store
    assert registry.get_sample_value("luathrottle_breaker_open", store) == 1
    first.succeeded()
    assert registry.get_sample_value("luathrottle_breaker_open", store) == 1
    second.succeeded()
    assert registry.get_sample_value("luathrottle_breaker_open", store) == 0


def test_no_label_holds_the_raw_identity(registry):
    identity = "alice@example.com"
    Limiter(1, 60, backend=MemoryBackend(), cache_denials=True).hit(identity)
    Limiter(1, 60, backend=dead_store(), on_failure="deny").hit(identity)
    slots = ConcurrencyLimiter(1, lease=60, backend=MemoryBackend())
    slots.acquire(identity).release()
    samples = [sample for metric in registry.collect() for sample in metric.samples]
    assert samples
    names = {name for sample in samples for name in sample.labels}
    assert names <= {"limit", "algorithm", "door", "outcome", "error", "le", "store"}
    exposed = prometheus_client.generate_latest(registry).decode()
    assert identity not in exposed
    assert "alice" not in exposed


def test_a_second_observer_on_one_registry_is_refused(registry):
    with pytest.raises(ValueError, match="one PrometheusObserver per registry"):
        PrometheusObserver(registry)
    # The first one still counts, alone.
    Limiter(3, 60, backend=MemoryBackend()).hit("k")
    assert by_outcome(registry, "3/60s") == {"admitted": 1}


def test_each_registry_has_its_own_counts(registry):
    other = CollectorRegistry()
    observer = PrometheusObserver(other)
    limiter = Limiter(3, 60, backend=MemoryBackend(), observers=[observer])
    limiter.hit("k")
    Limiter(3, 60, backend=MemoryBackend()).hit("k")
    assert by_outcome(registry, "3/60s") == {"admitted": 2}
    assert by_outcome(other, "3/60s") == {"admitted": 1}


def test_the_django_setting_adds_one_observer_on_the_default_registry():
    guard = SyncThrottle(2, 60, backend=MemoryBackend())
    view = throttle(guard, allow_unsafe_cache=None)(lambda request: HttpResponse())
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.9")
    default = prometheus_client.REGISTRY
    settings = {
        "observers": ["luathrottle.prometheus.PrometheusObserver"],
        "allow_unsafe_cache": None,
    }
    # A Django throttle's limit is named after its cache key.
    before = {
        outcome: decisions(default, "RemoteAddr", outcome, door="django")
        for outcome in ("admitted", "denied")
    }
    with override_settings(LUATHROTTLE=settings):
        statuses = [view(request).status_code for _ in range(3)]
    view(request)  # the setting is gone, and its observer with it
    assert statuses == [200, 200, 429]
    after = {
        outcome: decisions(default, "RemoteAddr", outcome, door="django")
        - before[outcome]
        for outcome in before
    }
    assert after == {"admitted": 2, "denied": 1}


# The same decisions counted in one process, and in prometheus-client's
# multiprocess mode through its files and MultiProcessCollector: every
# instrument agrees, but for times.
SCENARIO = """
import json, os, sys
import prometheus_client
from prometheus_client import CollectorRegistry
import luathrottle
from luathrottle import CircuitBreaker, ConcurrencyLimiter, Limiter
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from luathrottle.prometheus import PrometheusObserver

shared = "PROMETHEUS_MULTIPROC_DIR" in os.environ
observer = PrometheusObserver()
luathrottle.add_observer(observer)
cached = Limiter(1, 60, backend=MemoryBackend(), cache_denials=True)
for _ in range(4):
    cached.hit("k")
trial = Limiter(1, 600, backend=MemoryBackend(), near_limit=0.5, shadow=True)
for _ in range(2):
    trial.hit("k")
dead = SyncRedis.from_url(
    sys.argv[1], timeout=0.2, breaker=CircuitBreaker(failures=2, cool_off=60)
)
failing = Limiter(2, 60, backend=dead, on_failure="deny")
for _ in range(3):
    failing.hit("k")
slots = ConcurrencyLimiter(1, lease=60, backend=MemoryBackend())
slots.acquire("k").release()
if shared:
    from prometheus_client.multiprocess import MultiProcessCollector
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
else:
    registry = prometheus_client.REGISTRY
samples = sorted(
    [sample.name, sorted(sample.labels.items()), sample.value]
    for metric in registry.collect()
    for sample in metric.samples
    if sample.name.startswith("luathrottle_")
    and not sample.name.endswith(("_created", "_sum", "_bucket"))
)
print(json.dumps(samples))
"""


def run_scenario(tmp_path, dead, shared):
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() != "prometheus_multiproc_dir"
    }
    if shared:
        files = tmp_path / "metrics"
        files.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(files)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(TESTS.parent / "src"), os.environ.get("PYTHONPATH")])
    )
    result = subprocess.run(
        [sys.executable, "-c", SCENARIO, dead],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_multiprocess_mode_counts_what_one_process_counts(tmp_path):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    alone = run_scenario(tmp_path, dead, shared=False)
    shared = run_scenario(tmp_path, dead, shared=True)
    assert shared == alone
    counted = {
        (name, tuple(map(tuple, labels))): value for name, labels, value in alone
    }

    def value(name, **labels):
        return counted[(name, tuple(sorted((*labels.items(), ("door", "limiter")))))]

    fixed = {"algorithm": "fixed_window"}
    assert value(DECISIONS, limit="1/60s", outcome="denied_from_cache", **fixed) == 2
    assert value(DECISIONS, limit="1/600s", outcome="near_limit", **fixed) == 1
    assert value(DECISIONS, limit="1/600s", outcome="shadow_denied", **fixed) == 1
    assert value(DECISIONS, limit="2/60s", outcome="failed_closed", **fixed) == 3
    failures = "luathrottle_store_failures_total"
    assert value(failures, error="BackendError", **fixed) == 2
    assert value(failures, error="CircuitOpenError", **fixed) == 1
    # Every hit made a store call but the denial cache's two and the one
    # the open breaker kept back.
    assert value(f"{SECONDS}_count", **fixed) == 6
    answers = "luathrottle_denial_cache_answers_total"
    assert value(answers, limit="1/60s", **fixed) == 2
    [(labels, gauge)] = [
        (labels, shown)
        for (name, labels), shown in counted.items()
        if name == "luathrottle_breaker_open"
    ]
    assert gauge == 1
    assert dict(labels)["store"].startswith("redis 127.0.0.1:")
