"""Processes racing on one key through SyncDjangoCache.

Each child is a fresh interpreter (spawn) that configures Django from
tests/django_settings.py, warms up, waits for the others at a barrier, then
hits one key as fast as it can.

Over a Redis-backed cache every decision is one script call, so exactly the
limit is admitted in total. Over a shared cache that is not Redis (a
file-based cache here), the read-modify-write can lose updates between
processes; that test only measures how many hits got through (printed, and
recorded as a property), since how many is up to the scheduler.
"""

import multiprocessing

import pytest
import redis
from django.conf import settings

from luathrottle import LeakyBucket, Limit, Limiter, SimpleRate

PROCESSES = 4
HITS = 100
LIMIT = Limit(150, 86400)  # a day: a leaky bucket leaks no whole unit meanwhile


def hammer(url, alias, extra_caches, algorithm, barrier, results):
    """A child's entry point: configure Django, then hit one key HITS times."""
    from django_settings import build_settings
    from luathrottle.backends.django_cache import SyncDjangoCache

    config = build_settings(url)
    config["CACHES"].update(extra_caches)
    settings.configure(**config)
    backend = SyncDjangoCache(alias)
    limiter = Limiter([LIMIT], algorithm=algorithm, backend=backend)
    limiter.peek("warm-up")  # connect and load the script before the race
    barrier.wait(timeout=120)
    results.put(sum(limiter.hit("shared").allowed for _ in range(HITS)))


def race(url, alias, algorithm, extra_caches=None):
    """Run the children; return how many hits were admitted in total."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    args = (url, alias, extra_caches or {}, algorithm, barrier, results)
    children = [context.Process(target=hammer, args=args) for _ in range(PROCESSES)]
    for child in children:
        child.start()
    counts = [results.get(timeout=180) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    return sum(counts)


@pytest.mark.parametrize("algorithm", [SimpleRate(), LeakyBucket()], ids=repr)
@pytest.mark.parametrize(
    ("alias", "db"), [("redis", 1), ("django_redis", 2), ("django_valkey", 3)]
)
def test_processes_admit_exactly_the_limit_on_redis(redis_url, alias, db, algorithm):
    base = redis_url.rsplit("/", 1)[0]
    with redis.Redis.from_url(f"{base}/{db}") as client:
        client.flushdb()
    admitted = race(redis_url, alias, algorithm)
    assert admitted == LIMIT.max_requests  # of PROCESSES * HITS = 400 attempts


def test_processes_on_a_shared_file_cache_measure_over_admission(
    redis_url, tmp_path, record_property
):
    file_cache = {
        "file": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path),
        }
    }
    admitted = race(redis_url, "file", SimpleRate(), file_cache)
    record_property("admitted_of_limit", f"{admitted}/{LIMIT.max_requests}")
    print(f"file cache, {PROCESSES} processes: {admitted} admitted, limit {LIMIT}")
    # Lost updates only ever admit more: the counter reached the limit.
    assert LIMIT.max_requests <= admitted <= PROCESSES * HITS
