"""SyncDjangoCache and AsyncDjangoCache on every kind of Django cache.

Caches come from tests/django_settings.py: "default" (locmem), "redis"
(Django's RedisCache, KEY_PREFIX "site", VERSION 3, db 1), "django_redis"
(db 2), "django_valkey" (django-valkey's ValkeyCache, db 3), "dummy" and
"database". Time moves through the limiter's clock.
"""

import asyncio
import hashlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from luathrottle import (
    AsyncLimiter,
    BackendError,
    LeakyBucket,
    Limiter,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.backends.base import AsyncBackend, SyncBackend
from luathrottle.backends.django_cache import (
    AsyncDjangoCache,
    SyncDjangoCache,
    UnsafeCacheBackendWarning,
)
from luathrottle.backends.memory import MemoryBackend
from luathrottle.exceptions import ScriptError
from luathrottle.scripts import Script
from states import limiter_keys, locate, staged_hash, store_keys

ALGORITHMS = [SimpleRate(), LeakyBucket(), TokenBucket(burst=3), SlidingWindow()]
REDIS_DBS = {"redis": 1, "django_redis": 2, "django_valkey": 3}
CACHE_KINDS = ["default", "redis", "django_redis", "django_valkey", "database"]


def raw_client(redis_url, alias):
    base = redis_url.rsplit("/", 1)[0]
    return redis.Redis.from_url(f"{base}/{REDIS_DBS[alias]}")


def prepare_cache(request, alias):
    """Empty the cache behind ``alias``, with what it needs to exist."""
    if alias in REDIS_DBS:
        client = raw_client(request.getfixturevalue("redis_url"), alias)
        client.flushdb()
        client.close()
    elif alias == "database":
        # Transactional: async calls reach the table from another thread.
        request.getfixturevalue("transactional_db")
        call_command("createcachetable", verbosity=0)
    caches[alias].clear()
    return alias


@pytest.fixture(params=CACHE_KINDS)
def cache_alias(request):
    return prepare_cache(request, request.param)


@pytest.fixture(params=list(REDIS_DBS))
def redis_cache(request):
    """A Redis-backed alias, emptied, and a raw client on its database."""
    prepare_cache(request, request.param)
    client = raw_client(request.getfixturevalue("redis_url"), request.param)
    yield request.param, client
    client.close()


@pytest.fixture
async def async_backends():
    """Builds AsyncDjangoCache objects and closes their clients afterwards."""
    made = []

    def build(alias):
        made.append(AsyncDjangoCache(alias))
        return made[-1]

    yield build
    for backend in made:
        await backend.aclose()


def run_async(alias, scenario):
    """Await ``scenario(AsyncDjangoCache(alias))`` from this sync test.

    As when Django serves an async view under WSGI, the cache's async
    methods come back to this thread through sync_to_async; so the
    database cache sees the test database, which lives in this thread.
    """

    async def main():
        backend = AsyncDjangoCache(alias)
        try:
            return await scenario(backend)
        finally:
            await backend.aclose()

    return async_to_sync(main)()


def command_calls(client):
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): stat["calls"] for name, stat in stats.items()
    }


def calls_delta(before, after):
    names = set(before) | set(after)
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in names}
    return {name: n for name, n in delta.items() if n and name != "info"}


# --- admitting exactly the limit -------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=repr)
def test_sync_admits_exactly_the_limit(cache_alias, algorithm, clock):
    limiter = Limiter(
        3, 60, algorithm=algorithm, backend=SyncDjangoCache(cache_alias), clock=clock
    )
    decisions = [limiter.hit("k") for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=repr)
def test_async_admits_exactly_the_limit(cache_alias, algorithm, clock):
    async def scenario(backend):
        limiter = AsyncLimiter(3, 60, algorithm=algorithm, backend=backend, clock=clock)
        return [await limiter.hit("k") for _ in range(5)]

    decisions = run_async(cache_alias, scenario)
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]


@pytest.mark.parametrize(
    ("algorithm", "longest_reset"),
    [
        (SimpleRate(), 3600),
        (LeakyBucket(), 3600),
        (TokenBucket(), 3600),
        # The sliding window's hits weigh until the next window ends.
        (SlidingWindow(), 7200),
    ],
    ids=repr,
)
def test_server_time_is_used_without_a_clock(cache_alias, algorithm, longest_reset):
    limiter = Limiter(
        2, 3600, algorithm=algorithm, backend=SyncDjangoCache(cache_alias)
    )
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]
    assert 3500 < limiter.peek("k").reset_after <= longest_reset


def test_new_algorithms_carry_their_state_between_calls(cache_alias, clock):
    """Wide sliding-window counts, kept as text, and a bucket's arrival time
    go through the cache and come back as the scripts wrote them."""
    backend = SyncDjangoCache(cache_alias)
    clock.now = (int(clock.now) // 60 + 1) * 60 + 30
    window = Limiter(10**6, 60, algorithm=SlidingWindow(), backend=backend, clock=clock)
    assert window.hit("k", cost=600_000).remaining == 400_000
    clock.advance(60)  # half way into the next window: 600,000 weigh 300,000
    assert window.peek("k").remaining == 700_000
    bucket = Limiter(1, 1, algorithm=TokenBucket(burst=5), backend=backend, clock=clock)
    assert bucket.hit("k", cost=5).remaining == 0
    clock.advance(2)
    assert bucket.peek("k").remaining == 2


def test_window_resets_when_the_clock_moves(cache_alias, clock):
    limiter = Limiter(2, 60, backend=SyncDjangoCache(cache_alias), clock=clock)
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]
    clock.advance(59)
    assert not limiter.hit("k").allowed
    clock.advance(1)
    assert limiter.hit("k").allowed


def test_peek_spends_nothing_and_reset_forgets(cache_alias, clock):
    limiter = Limiter(2, 60, backend=SyncDjangoCache(cache_alias), clock=clock)
    assert [limiter.peek("k").remaining for _ in range(3)] == [2, 2, 2]
    limiter.hit("k")
    limiter.hit("k")
    assert not limiter.peek("k").allowed
    limiter.reset("k")
    assert limiter.hit("k").remaining == 1


def test_async_reset_forgets(cache_alias, clock):
    async def scenario(backend):
        limiter = AsyncLimiter(1, 60, backend=backend, clock=clock)
        allowed = [(await limiter.hit("k")).allowed for _ in range(2)]
        await limiter.reset("k")
        return [*allowed, (await limiter.hit("k")).allowed]

    assert run_async(cache_alias, scenario) == [True, False, True]


def test_one_backend_serves_many_algorithms_and_limiters(cache_alias, clock):
    shared = {"backend": SyncDjangoCache(cache_alias), "clock": clock}
    limiters = [
        (2, Limiter(2, 60, **shared)),
        (3, Limiter(3, 60, algorithm=LeakyBucket(), **shared)),
        (1, Limiter(["1/minute", "5/hour"], **shared)),
        (4, Limiter(4, 60, prefix="other", **shared)),
    ]
    for _ in range(5):
        for _, limiter in limiters:
            limiter.hit("k")
    assert [limiter.peek("k").remaining for _, limiter in limiters] == [0, 0, 0, 0]
    fresh = [limiter.peek("other-key").remaining for _, limiter in limiters]
    assert fresh == [limit for limit, _ in limiters]


def test_async_backend_serves_many_limiters(cache_alias, clock):
    async def scenario(backend):
        simple = AsyncLimiter(2, 60, backend=backend, clock=clock)
        leaky = AsyncLimiter(
            3, 60, algorithm=LeakyBucket(), backend=backend, clock=clock
        )
        return [
            [(await lim.hit("k")).allowed for _ in range(4)] for lim in (simple, leaky)
        ]

    results = run_async(cache_alias, scenario)
    assert results == [[True, True, False, False], [True, True, True, False]]


# --- Redis-backed caches: keys, round trips, NOSCRIPT -----------------------


def test_keys_carry_the_cache_prefix_and_version(redis_cache, clock):
    alias, client = redis_cache
    limiter = Limiter(
        ["3/minute", "10/hour"], backend=SyncDjangoCache(alias), clock=clock
    )
    limiter.hit("k")
    core_keys = Limiter(list(limiter.limits), prefix="lt").state_keys("k")
    prefix = {"redis": "site:3:", "django_redis": "dr:1:", "django_valkey": "dv:1:"}[
        alias
    ]
    stored = sorted(key.decode() for key in client.keys("*"))
    # SimpleRate keeps both limits in the identity's hash.
    assert stored == sorted(prefix + key for key in store_keys(core_keys))
    assert all(0 < client.pttl(key) <= 3_600_000 for key in stored)


async def test_async_keys_carry_the_cache_prefix_and_version(
    redis_cache, clock, async_backends
):
    alias, client = redis_cache
    limiter = AsyncLimiter(3, 60, backend=async_backends(alias), clock=clock)
    await limiter.hit("k")
    [core_key] = Limiter(list(limiter.limits), prefix="lt").state_keys("k")
    [hash_key] = store_keys([core_key])
    assert client.keys("*") == [caches[alias].make_key(hash_key).encode()]


def test_one_hit_is_one_evalsha(redis_cache, clock):
    alias, client = redis_cache
    limiter = Limiter(3, 60, backend=SyncDjangoCache(alias), clock=clock)
    limiter.hit("k")  # connects and loads the script
    before = command_calls(client)
    assert limiter.hit("k").remaining == 1
    # HMGET and HSET are the script's own calls, counted by the server too.
    assert calls_delta(before, command_calls(client)) == {
        "fcall": 1,
        "hmget": 1,
        "hset": 1,
    }


async def test_one_async_hit_is_one_evalsha(redis_cache, clock, async_backends):
    alias, client = redis_cache
    limiter = AsyncLimiter(3, 60, backend=async_backends(alias), clock=clock)
    await limiter.hit("k")
    before = command_calls(client)
    assert (await limiter.hit("k")).remaining == 1
    assert calls_delta(before, command_calls(client)) == {
        "fcall": 1,
        "hmget": 1,
        "hset": 1,
    }


def test_noscript_is_recovered_after_script_flush(redis_cache, clock):
    alias, client = redis_cache
    backend = SyncDjangoCache(alias)
    limiter = Limiter(2, 60, backend=backend, clock=clock)
    backend.initialize_algorithm(limiter.algorithm)
    assert client.function_list(library=limiter.script.library.name) != []
    assert limiter.hit("k").allowed
    client.function_flush()
    client.script_flush()
    assert [limiter.hit("k").allowed for _ in range(2)] == [True, False]
    assert client.script_exists(limiter.script.sha) == [True]


async def test_async_noscript_is_recovered_after_script_flush(
    redis_cache, clock, async_backends
):
    alias, client = redis_cache
    backend = async_backends(alias)
    limiter = AsyncLimiter(2, 60, backend=backend, clock=clock)
    await backend.ainitialize_algorithm(limiter.algorithm)
    assert client.function_list(library=limiter.script.library.name) != []
    client.function_flush()
    client.script_flush()
    assert [(await limiter.hit("k")).allowed for _ in range(3)] == [True, True, False]


def test_async_client_is_per_event_loop(redis_cache, clock):
    alias, _ = redis_cache
    backend = AsyncDjangoCache(alias)
    limiter = AsyncLimiter(3, 60, backend=backend, clock=clock)

    async def hit_and_close():
        allowed = (await limiter.hit("k")).allowed
        await backend.aclose()
        return allowed

    # A client shared between loops would fail in the second loop.
    assert [asyncio.run(hit_and_close()) for _ in range(4)] == [True] * 3 + [False]


def hashed_key(key, prefix, version):
    return hashlib.sha256(f"{prefix}:{version}:{key}".encode()).hexdigest()


@pytest.mark.parametrize(
    "options",
    [{"KEY_PREFIX": "{site}"}, {"KEY_FUNCTION": hashed_key}],
    ids=["braced-prefix", "hashing-key-function"],
)
def test_key_transforms_apply_and_count_exactly(redis_url, clock, options):
    base = redis_url.rsplit("/", 1)[0]
    transformed = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"{base}/1",
        **options,
    }
    with override_settings(CACHES={**settings.CACHES, "transformed": transformed}):
        backend = SyncDjangoCache("transformed")
        limiter = Limiter(3, 60, backend=backend, clock=clock, prefix="transform")
        limiter.reset("k")
        assert [limiter.hit("k").allowed for _ in range(4)] == [True] * 3 + [False]
        [key] = store_keys(limiter_keys(limiter, "k"))
        made = caches["transformed"].make_key(key)
        assert redis.Redis.from_url(f"{base}/1").exists(made) == 1


# --- the in-process path -----------------------------------------------------

PROBE = Script.from_source(
    "-- luathrottle script: probe\n-- version: 1\n"
    "local deleted = redis.call('DEL', KEYS[1], KEYS[2])\n"
    "redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])\n"
    "redis.call('SET', KEYS[4], 'forever')\n"
    "local time = redis.call('TIME')\n"
    "return {deleted, tonumber(time[1]), redis.call('GET', KEYS[3])}\n",
    filename="probe.lua",
)


def test_staged_keyspace_serves_get_set_del_and_time(request):
    alias = prepare_cache(request, "database")
    cache = caches[alias]
    cache.set("gone", "x")
    keys = ["gone", "absent", "short", "kept"]
    now = datetime.now(UTC)
    reply = SyncDjangoCache(alias).run_script(PROBE, keys, ["42", "10001"])
    assert reply[0] == 1
    assert abs(reply[1] - now.timestamp()) < 60
    assert reply[2] == 42
    assert cache.get_many(keys) == {"short": "42", "kept": "forever"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT cache_key, expires FROM luathrottle_cache")
        expires = {key: value for key, value in cursor.fetchall()}
    # PX 10001 ms is kept for 11 whole seconds (the table drops fractions of
    # a second, so 10 would expire by now + 10); no PX is kept for good.
    short = (expires[cache.make_key("short")].replace(tzinfo=UTC) - now).total_seconds()
    assert 10 < short < 60
    assert expires[cache.make_key("kept")].year == 9999


@pytest.mark.parametrize("alias", ["default", "database"])
def test_async_staged_keyspace_writes_back(request, alias):
    cache = caches[prepare_cache(request, alias)]
    keys = ["gone", "absent", "short", "kept"]

    async def scenario(backend):
        await cache.aset("gone", "x")
        reply = await backend.arun_script(PROBE, keys, ["7", "60000"])
        return reply, await cache.aget_many(keys)

    reply, stored = run_async(alias, scenario)
    assert (reply[0], reply[2]) == (1, 7)
    assert stored == {"short": "7", "kept": "forever"}


def test_a_foreign_value_counts_as_absent(clock):
    """A value of another type holds no state of ours: the hit is judged as
    on a fresh key and writes its state over it (at the key, or in its field
    of a hashed script's hash)."""
    backend = SyncDjangoCache()
    limiter = Limiter(3, 60, algorithm=LeakyBucket(), backend=backend, clock=clock)
    [key] = Limiter(3, 60, algorithm=LeakyBucket(), prefix="lt").state_keys("k")
    store_key, field = locate(key)
    caches["default"].set(store_key, {"count": 5})
    try:
        assert limiter.hit("k").remaining == 2
        stored = caches["default"].get(store_key)
        assert isinstance(
            stored if field is None else staged_hash(stored)[0][field], str
        )
    finally:
        caches["default"].delete(store_key)


def test_a_script_error_is_a_backend_error():
    broken = Script.from_source(
        "-- luathrottle script: broken\n-- version: 1\n"
        "return redis.call('INCR', KEYS[1])\n",
        filename="broken.lua",
    )
    with pytest.raises(BackendError, match="unknown command INCR"):
        SyncDjangoCache().run_script(broken, ["x"], [])


def test_a_reply_that_is_no_array_is_a_script_error():
    """Scripts answer arrays; a scalar fails in the keyspace, as a script
    error whose message names the script."""
    scalar = Script.from_source(
        "-- luathrottle script: scalar\n-- version: 1\nreturn 5\n",
        filename="scalar.lua",
    )
    with pytest.raises(ScriptError, match=r"^scalar: "):
        SyncDjangoCache().run_script(scalar, ["x"], [])


def test_reply_numbers_are_made_integers_as_redis_makes_them(every_sync_store):
    """Every store truncates a reply's numbers towards zero, Redis's way."""
    fractions = Script.from_source(
        "-- luathrottle script: fractions\n-- version: 1\nreturn {2.7, -2.7, 5, 0.5}\n",
        filename="fractions.lua",
    )
    assert every_sync_store.run_script(fractions, ["x"], ["hit"]) == [2, -2, 5, 0]


@pytest.mark.parametrize("in_process", [MemoryBackend, SyncDjangoCache])
def test_a_reply_field_that_is_no_number_is_a_script_error(in_process):
    word = Script.from_source(
        "-- luathrottle script: word\n-- version: 1\nreturn {1, 'many'}\n",
        filename="word.lua",
    )
    with pytest.raises(ScriptError, match=r"^word: .*reply field 2 is no integer"):
        in_process().run_script(word, ["x"], [])


PAIRS = Script.from_source(
    "-- luathrottle script: pairs\n-- version: 1\n"
    "local reply = {}\n"
    "for i = 1, #KEYS do\n"
    "  local old = redis.call('GET', KEYS[i])\n"
    "  reply[i] = old and tonumber(old) or -1\n"
    "  redis.call('SET', KEYS[i], ARGV[i], 'PX', ARGV[i] * 1000)\n"
    "end\n"
    "return reply\n",
    filename="pairs.lua",
)


def test_staged_values_cross_by_position():
    """Missing keys among present ones read as absent, each key reads its
    own value, and each key gets its own write, whatever its timeout."""
    cache = caches["default"]
    keys = ["staged:a", "staged:b", "staged:c", "staged:d"]
    cache.delete_many(keys)
    cache.set_many({"staged:b": "2", "staged:d": 4})
    backend = SyncDjangoCache()
    assert backend.run_script(PAIRS, keys, ["11", "12", "11", "13"]) == [-1, 2, -1, 4]
    assert backend.run_script(PAIRS, keys, ["5", "6", "7", "8"]) == [11, 12, 11, 13]
    assert cache.get_many(keys) == dict(zip(keys, ["5", "6", "7", "8"], strict=True))
    cache.delete_many(keys)


def test_a_key_named_twice_is_read_once_and_seen_under_each_name(request):
    """The limits of one hash name it once each: the cache is asked for it
    once, and every name reads its value and the script's own writes."""
    alias = prepare_cache(request, "database")
    cache = caches[alias]
    cache.set("staged:twice", "3")
    keys = ["staged:twice", "staged:twice", "staged:other"]
    with CaptureQueriesContext(connection) as queries:
        reply = SyncDjangoCache(alias).run_script(PAIRS, keys, ["11", "12", "13"])
    assert reply == [3, 11, -1]
    assert cache.get_many(keys) == {"staged:twice": "12", "staged:other": "13"}
    # The database cache's get_many is the one SELECT of values.
    [read] = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('SELECT "cache_key", "value"')
    ]
    assert read.count(cache.make_key("staged:twice")) == 1, read


class AskedLocMemCache(LocMemCache):
    """Django's LocMemCache, noting the keys each get_many asks for (its
    get_many reads every key it is given, one get each)."""

    def __init__(self, name, params) -> None:
        super().__init__(name, params)
        self.asked: list[list[str]] = []

    def get_many(self, keys, version=None):
        self.asked.append(list(keys))
        return super().get_many(keys, version)


def test_a_hash_named_by_three_limits_is_read_once_from_a_locmem_cache(clock):
    asked = {"BACKEND": f"{__name__}.AskedLocMemCache", "LOCATION": "asked"}
    with override_settings(CACHES={**settings.CACHES, "asked": asked}):
        cache = caches["asked"]
        cache.clear()
        backend = SyncDjangoCache("asked", breaker=False)
        limiter = Limiter(["5/s", "10/minute", "20/hour"], backend=backend, clock=clock)
        keys, _ = limiter.script.words(limiter.state_keys("k"), [])
        assert len(set(keys)) == 1 < len(keys)
        for remaining in (4, 3):
            decision = limiter.hit("k")
            assert [item.remaining for item in decision.limits] == [
                remaining,
                remaining + 5,
                remaining + 15,
            ]
        assert cache.asked == [[keys[0]], [keys[0]]]


def test_each_thread_uses_the_cache_object_django_gives_it(clock):
    """Django gives each thread its own cache object; the backend, which
    remembers them, uses each thread's own."""
    asked = {"BACKEND": f"{__name__}.AskedLocMemCache", "LOCATION": "threads"}
    with override_settings(CACHES={**settings.CACHES, "asked": asked}):
        backend = SyncDjangoCache("asked", breaker=False)
        limiter = Limiter(100, 60, backend=backend, clock=clock)

        def hit_twice():
            limiter.hit("k")
            limiter.hit("k")
            return caches["asked"]

        mine = hit_twice()
        with ThreadPoolExecutor(1) as pool:
            theirs = pool.submit(hit_twice).result()
        assert theirs is not mine
        assert len(mine.asked) == len(theirs.asked) == 2
        assert limiter.peek("k").remaining == 96


def test_a_backend_follows_caches_when_the_setting_changes(clock):
    backend = SyncDjangoCache("asked", breaker=False)
    limiter = Limiter(100, 60, backend=backend, clock=clock)
    used = []
    for location in ("first", "second"):
        asked = {"BACKEND": f"{__name__}.AskedLocMemCache", "LOCATION": location}
        with override_settings(CACHES={**settings.CACHES, "asked": asked}):
            caches["asked"].clear()
            limiter.hit("k")
            assert limiter.hit("k").remaining == 98
            used.append(caches["asked"])
    assert used[0] is not used[1]
    assert [len(cache.asked) for cache in used] == [2, 2]


def test_dummy_cache_admits_every_hit(clock):
    """DummyCache stores nothing, so every hit sees a fresh window."""
    limiter = Limiter(3, 60, backend=SyncDjangoCache("dummy"), clock=clock)
    decisions = [limiter.hit("k") for _ in range(10)]
    assert all(d.allowed for d in decisions)
    assert {d.remaining for d in decisions} == {2}


async def test_async_dummy_cache_admits_every_hit(clock, async_backends):
    limiter = AsyncLimiter(3, 60, backend=async_backends("dummy"), clock=clock)
    assert all([(await limiter.hit("k")).allowed for _ in range(10)])


def test_threads_of_one_process_admit_exactly_the_limit():
    caches["default"].clear()
    limiter = Limiter(40, 3600, backend=SyncDjangoCache())
    with ThreadPoolExecutor(8) as pool:
        admitted = list(pool.map(lambda _: limiter.hit("k").allowed, range(200)))
    assert admitted.count(True) == 40


async def test_tasks_of_one_loop_admit_exactly_the_limit(async_backends):
    caches["default"].clear()
    limiter = AsyncLimiter(40, 3600, backend=async_backends("default"))
    results = await asyncio.gather(*(limiter.hit("k") for _ in range(120)))
    assert sum(d.allowed for d in results) == 40


# --- safety, configuration, API ----------------------------------------------


@pytest.mark.parametrize("twin", [SyncDjangoCache, AsyncDjangoCache])
@pytest.mark.parametrize(
    ("alias", "shared", "reason"),
    [
        ("redis", True, None),
        ("django_redis", True, None),
        ("django_valkey", True, None),
        ("default", False, "LocMemCache keeps its data in each process"),
        ("dummy", False, "DummyCache stores nothing"),
        ("database", True, "DatabaseCache cannot run a script atomically"),
    ],
)
def test_traits_describe_the_cache(twin, alias, shared, reason):
    traits = twin(alias).traits()
    assert traits.shared_across_processes is shared
    assert traits.single_slot_calls is False
    # Two backends on one alias are one store, so their calls may batch.
    assert traits.identity == twin(alias).traits().identity
    other = "default" if alias == "redis" else "redis"
    assert traits.identity != twin(other).traits().identity
    if reason is None:
        assert traits.unsafe_reason is None
    else:
        assert reason in traits.unsafe_reason


def test_file_cache_is_unsafe(tmp_path):
    file_cache = {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(tmp_path),
    }
    with override_settings(CACHES={**settings.CACHES, "file": file_cache}):
        reason = SyncDjangoCache("file").traits().unsafe_reason
        assert "FileBasedCache cannot run" in reason


def test_warning_class():
    assert issubclass(UnsafeCacheBackendWarning, UserWarning)
    assert "Final" in UnsafeCacheBackendWarning.__doc__


@pytest.mark.parametrize("twin", [SyncDjangoCache, AsyncDjangoCache])
def test_cache_name_is_validated(twin):
    with pytest.raises(TypeError, match="cache_name must be a str"):
        twin(5)
    with pytest.raises(ValueError, match="cache_name must not be empty"):
        twin("")
    twin("redis").check()
    missing = twin("nope")  # resolved lazily: building it is fine
    with pytest.raises(
        ValueError, match=r"cache_name 'nope' is not in settings.CACHES"
    ):
        missing.check()
    with pytest.raises(ValueError, match="'nope'"):
        missing.traits()


def test_twins_are_backends_with_the_same_api():
    assert issubclass(SyncDjangoCache, SyncBackend)
    assert issubclass(AsyncDjangoCache, AsyncBackend)

    def public(cls):
        return {name for name in dir(cls) if not name.startswith("_")}

    async_names = {name.removeprefix("a") for name in public(AsyncDjangoCache)}
    # aclose() closes the asyncio clients; Django owns the sync ones.
    assert async_names - {"close"} == public(SyncDjangoCache)
    assert repr(AsyncDjangoCache("redis")) == "AsyncDjangoCache('redis')"


def test_exports():
    from luathrottle.backends import django_cache

    assert sorted(django_cache.__all__) == [
        "AsyncDjangoCache",
        "SyncDjangoCache",
        "UnsafeCacheBackendWarning",
    ]


def test_importing_luathrottle_does_not_import_django():
    code = (
        "import sys, luathrottle, luathrottle.backends;"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
