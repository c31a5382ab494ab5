"""State that someone else wrote at a state key.

Whatever a third party SETs at a key (a string the script cannot read, a
number out of range, a count longer than any limit's, a window or bucket
that ends too far ahead for the duration or capacity it names), the script
treats it as absent: the next admitted hit is
judged as on a fresh key and overwrites it with a state that expires; the
``luathrottle`` logger warns once per call that met it, naming the hashed
key. A key of another type where an identity's hash belongs (a string, a
list; in a staged cache, a value that is no hash of ours) holds no state of
ours either: it counts as absent too, and the next admitted hit replaces it
(also ``test_hash_layout.py`` and each algorithm's hash tests). The rule
holds on the real Redis, fakeredis, the embedded backend and Django's
caches, staged (LocMem) or on Redis.
"""

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
import redis
from django.core.cache import caches
from django.http import HttpResponse

from luathrottle import (
    AsyncLimiter,
    LeakyBucket,
    Limit,
    Limiter,
    SimpleRate,
)
from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.backends.django_cache import AsyncDjangoCache, SyncDjangoCache
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.decision import Decision
from luathrottle.django import AsyncThrottle, SyncThrottle, throttle
from states import (
    limiter_keys,
    locate,
    read_state,
    staged_bytes,
    staged_hash,
    state_ttl,
    write_state,
)

LIMIT = Limit(5, 60)
WARNING = "not written by luathrottle"

#: Strings no script of ours writes.
GARBAGE = {
    "letters": "abc",
    "empty": "",
    "negative": "-5",
    "minus": "-",
    "inf": "inf",
    "minus-inf": "-inf",
    "nan": "nan",
    "huge-float": "1e300",
    "thirty-nines": "9" * 30,
    "plus": "+5",
    "leading-space": " 5",
    "trailing-space": "5 ",
    "hex": "0x1f",
    "decimal": "1.5",
    "nul": "5\x00",
    "unicode": "\u0665",
    "megabyte": "1" * 1_000_000,
    "colon": ":",
    "no-count": "1800000000000:",
    "no-window": ":3",
    # One field more than any state holds, a penalty's end included.
    "five-colons": "1:1:1:1:1:1",
    "empty-penalty": "1:1:1:1:",
    "signed-count": "1800000000000:-1",
    "spaced-colon": "1800000000000: 1",
}


def far_ahead(algorithm: str, now_us: int) -> str:
    """A state that ends an hour from now, though it names a 5/60 limit:
    none of those lasts that long."""
    if algorithm == "simple":
        return f"{now_us // 1000 + 3_600_000}:0:60"
    return f"{now_us + 3_600_000_000}:12000000:5"


def beyond_any_limit(algorithm: str, now_us: int) -> str:
    """A window that ends in 30 s, holding a count of 17 digits, more than
    any limit admits; a leaky bucket 10 minutes from empty, though the drain
    and capacity it names empty a full one in 1 minute (plus 5 minutes'
    margin for clocks). A count merely above today's limit is no one
    else's: it was counted under a higher limit (``test_limit_changes.py``)."""
    if algorithm == "simple":
        return f"{now_us // 1000 + 30_000}:{'1' * 17}:60"
    return f"{now_us + 600_000_000}:12000000:5"


COMPUTED: dict[str, Callable[[str, int], str]] = {
    "far-ahead": far_ahead,
    "beyond-any-limit": beyond_any_limit,
}
CASES = [*GARBAGE, *COMPUTED]
ALGORITHMS: dict[str, Callable[[], BaseThrottleAlgorithm]] = {
    "simple": SimpleRate,
    "leaky": LeakyBucket,
}


def garbage(case: str, algorithm: str, now_us: int) -> str:
    if case in GARBAGE:
        return GARBAGE[case]
    return COMPUTED[case](algorithm, now_us)


class Store:
    """One backend of a limiter, with raw access to its keys."""

    def __init__(self, kind: str, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.clock = request.getfixturevalue("clock")
        if kind == "memory":
            self.backend: Any = MemoryBackend(clock=self.clock)
        elif kind == "fakeredis":
            self.backend = SyncRedis(fakeredis.FakeRedis())
        else:
            self.backend = SyncRedis(request.getfixturevalue("redis_client"))

    def now_us(self) -> int:
        if self.kind == "memory":
            return round(self.clock() * 1_000_000)
        return time.time_ns() // 1000

    def set(self, key: str, value: str) -> None:
        write_state(self.backend, key, value)

    def get(self, key: str) -> str | None:
        return read_state(self.backend, key)

    def pttl(self, key: str) -> int:
        return state_ttl(self.backend, key)

    def other_type(self, key: str, kind: str) -> None:
        """Make the key that holds ``key``'s state a ``kind`` (``string``,
        ``hash`` or ``list``) that is no state of ours."""
        store_key, _ = locate(key)
        words = {
            "string": ("SET", "x"),
            "hash": ("HSET", "f", "1"),
            "list": ("RPUSH", "1"),
        }
        command, *args = words[kind]
        if self.kind == "memory":
            self.backend.command(command, store_key, *args)
        else:
            self.backend.client.execute_command(command, store_key, *args)

    def type_of(self, key: str) -> str:
        """TYPE of the key that holds ``key``'s state."""
        store_key, _ = locate(key)
        if self.kind == "memory":
            return str(self.backend.command("TYPE", store_key)[0])
        return str(self.backend.client.type(store_key).decode())


@pytest.fixture(params=["memory", "fakeredis", "redis"])
def store(request) -> Store:
    return Store(request.param, request)


def warnings_about(caplog: pytest.LogCaptureFixture, key: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "luathrottle"
        and record.levelno == logging.WARNING
        and WARNING in record.getMessage()
        and key in record.getMessage()
    ]


def assert_fresh_state(algorithm: str, state: str | None, ttl_ms: int, now_us: int):
    """``state`` is what one hit of cost 1 on a fresh 5/60 key writes, and
    expires no later than that state needs: a bucket's hash lives past the
    time it drains, by less than two full buckets (lua/leaky_bucket.lua,
    Expiry). A few seconds of slack cover a real server's clock moving on
    meanwhile."""
    assert state is not None
    if algorithm == "simple":
        parts = re.fullmatch(r"([0-9]+):([0-9]+):60", state)
        assert parts, state
        window_end_us = int(parts[1]) * 1000
        assert int(parts[2]) == 1
        assert 0 < window_end_us - now_us <= 60_000_000 + 2_000_000
        assert 0 < ttl_ms <= 60_000
    else:
        drain_us = 12_000_000  # 60 s / 5
        parts = re.fullmatch(rf"([0-9]+):{drain_us}:5", state)
        assert parts, state
        empty_us = int(parts[1]) - now_us
        assert 0 < empty_us <= drain_us + 2_000_000
        assert empty_us // 1000 - 2_000 < ttl_ms <= (drain_us + 2 * 60_000_000) // 1000


def assert_admitted_as_fresh(decision: Decision) -> None:
    assert decision.allowed
    assert decision.reason is None
    assert decision.remaining == LIMIT.max_requests - 1
    assert 0 < decision.reset_after <= LIMIT.duration
    assert decision.retry_after is None


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize("case", CASES)
def test_unreadable_state_counts_as_absent_and_is_overwritten(
    store, algorithm, case, caplog
):
    limiter = Limiter(LIMIT, algorithm=ALGORITHMS[algorithm](), backend=store.backend)
    [key] = limiter_keys(limiter, "client")
    store.set(key, garbage(case, algorithm, store.now_us()))

    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        assert_admitted_as_fresh(limiter.hit("client"))
        assert_fresh_state(algorithm, store.get(key), store.pttl(key), store.now_us())
        assert len(warnings_about(caplog, key)) == 1
        # The state is ours now: it counts, and no call warns again.
        second = limiter.hit("client")
    assert second.allowed
    assert second.remaining == LIMIT.max_requests - 2
    assert len(warnings_about(caplog, key)) == 1


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize("case", ["letters", "inf", "thirty-nines", "far-ahead"])
def test_a_peek_reads_unreadable_state_as_absent_and_writes_nothing(
    store, algorithm, case, caplog
):
    limiter = Limiter(LIMIT, algorithm=ALGORITHMS[algorithm](), backend=store.backend)
    [key] = limiter_keys(limiter, "client")
    written = garbage(case, algorithm, store.now_us())
    store.set(key, written)
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        decision = limiter.peek("client")
    assert decision.allowed
    assert decision.remaining == LIMIT.max_requests
    assert store.get(key) == (written or None)
    assert len(warnings_about(caplog, key)) == 1


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize("case", ["letters", "nan", "huge-float", "far-ahead"])
def test_a_denial_by_another_limit_writes_nothing(store, algorithm, case, caplog):
    strict = Limit(1, 60, name="strict")
    limiter = Limiter(
        [LIMIT, strict], algorithm=ALGORITHMS[algorithm](), backend=store.backend
    )
    assert limiter.hit("client").allowed  # the strict limit is now full
    hostile_key, strict_key = limiter_keys(limiter, "client")
    written = garbage(case, algorithm, store.now_us())
    store.set(hostile_key, written)
    strict_state = store.get(strict_key)

    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        decision = limiter.hit("client")
    assert not decision.allowed
    assert decision.limit == strict.max_requests
    assert decision.retry_after is not None
    assert 0 < decision.retry_after <= strict.duration
    hostile, denying = decision.limits
    assert (hostile.allowed, hostile.remaining) == (True, LIMIT.max_requests)
    assert not denying.allowed
    assert store.get(hostile_key) == (written or None)
    assert store.get(strict_key) == strict_state
    assert len(warnings_about(caplog, hostile_key)) == 1


@pytest.mark.parametrize("algorithm", ["simple", "leaky"])
@pytest.mark.parametrize("kind", ["string", "list"])
def test_a_hashed_scripts_key_of_another_type_counts_as_absent(
    store, kind, algorithm, caplog
):
    """SimpleRate and LeakyBucket keep an identity's limits in one hash: a
    key of another type there holds none of their state, so a peek reads
    every limit as fresh and writes nothing, and a hit replaces the key
    with its hash."""
    limiter = Limiter(
        [LIMIT, Limit(9, 30)],
        algorithm=ALGORITHMS[algorithm](),
        backend=store.backend,
    )
    keys = limiter_keys(limiter, "client")
    store.other_type(keys[0], kind)
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        peeked = limiter.peek("client")
        assert [item.remaining for item in peeked.limits] == [5, 9]
        assert store.type_of(keys[0]) == kind
        assert_admitted_as_fresh(limiter.hit("client"))
    for key in keys:
        assert len(warnings_about(caplog, key)) == 2
    assert_fresh_state(
        algorithm, store.get(keys[0]), store.pttl(keys[0]), store.now_us()
    )
    assert limiter.hit("client").remaining == LIMIT.max_requests - 2


@pytest.mark.redis
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
async def test_async_limiter_on_redis_overwrites_unreadable_state(
    async_redis_client, algorithm, caplog
):
    limiter = AsyncLimiter(
        LIMIT, algorithm=ALGORITHMS[algorithm](), backend=AsyncRedis(async_redis_client)
    )
    [key] = limiter_keys(limiter, "client")
    store_key, field = locate(key)
    if field is None:
        await async_redis_client.set(key, "inf")
    else:
        await async_redis_client.hset(store_key, field, "inf")
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        assert_admitted_as_fresh(await limiter.hit("client"))
    if field is None:
        state = (await async_redis_client.get(key)).decode()
    else:
        state = (await async_redis_client.hget(store_key, field)).decode()
    ttl = await async_redis_client.pttl(store_key)
    assert_fresh_state(algorithm, state, ttl, time.time_ns() // 1000)
    assert len(warnings_about(caplog, key)) == 1


# Django's caches: staged over LocMem, or one script call on RedisCache.


class DjangoStore:
    """A Django cache alias, with raw access to the keys a throttle writes."""

    def __init__(self, alias: str, redis_url: str | None) -> None:
        self.alias = alias
        self.cache = caches[alias]
        self.cache.clear()
        self.client: Any = None
        if redis_url is not None:
            self.client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/1")
            self.client.flushdb()

    def set(self, key: str, value: object) -> None:
        """Write ``value`` as the state named ``key``; a hashed script's in
        its field (the staged path caches a hash as bytes)."""
        store_key, field = locate(key)
        if self.client is not None:
            made = self.cache.make_key(store_key)
            if field is None:
                self.client.set(made, value)
            else:
                self.client.hset(made, field, value)
        elif field is None:
            self.cache.set(key, value, None)
        else:
            self.cache.set(store_key, staged_bytes({field: value}), None)

    def get_with_ttl(self, key: str) -> tuple[str | None, int]:
        store_key, field = locate(key)
        made = self.cache.make_key(store_key)
        if self.client is None:
            # LocMemCache keeps each key's expiry time in seconds.
            expiry = self.cache._expire_info.get(made)  # type: ignore[attr-defined]
            ttl = -1 if expiry is None else round((expiry - time.time()) * 1000)
            value = self.cache.get(store_key)
            if field is not None and value is not None:
                value = staged_hash(value)[0].get(field)
            return value, ttl
        raw = self.client.get(made) if field is None else self.client.hget(made, field)
        return None if raw is None else raw.decode(), self.client.pttl(made)

    def other_type(self, key: str) -> None:
        """Make the key that holds ``key``'s state something else: a dict
        or a Redis hash for a key of its own, a string for a hash."""
        store_key, field = locate(key)
        made = self.cache.make_key(store_key)
        if self.client is not None:
            if field is None:
                self.client.hset(made, "field", "1")
            else:
                self.client.set(made, "1")
        else:
            self.cache.set(store_key, {"field": 1} if field is None else "1", None)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


@pytest.fixture(params=["default", "redis"], ids=["locmem-staged", "redis-cache"])
def django_store(request):
    on_redis = request.param == "redis"
    url = request.getfixturevalue("redis_url") if on_redis else None
    store = DjangoStore(request.param, url)
    yield store
    store.close()


def ok(request):
    return HttpResponse("inside")


async def aok(request):
    return HttpResponse("inside")


async def respond(view, request):
    response = view(request)
    if asyncio.iscoroutine(response):
        response = await response
    return response


@pytest.fixture(params=["sync", "async"])
def mode(request) -> str:
    return request.param


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize("case", CASES)
async def test_django_views_overwrite_unreadable_state(
    django_store, mode, algorithm, case, rf, async_rf, caplog
):
    options: dict[str, Any] = {
        "algorithm": ALGORITHMS[algorithm](),
        "scope": "hostile-state",
    }
    decorator = {"allow_unsafe_cache": None, "headers_on_every_response": True}
    if mode == "sync":
        backend: Any = SyncDjangoCache(django_store.alias)
        guard: Any = SyncThrottle(5, 60, backend=backend, **options)
        view = throttle(guard, **decorator)(ok)
        request = rf.get("/")
    else:
        backend = AsyncDjangoCache(django_store.alias)
        guard = AsyncThrottle(5, 60, backend=backend, **options)
        view = throttle(guard, **decorator)(aok)
        request = async_rf.get("/")
    key = guard.state_key(request, "")
    django_store.set(key, garbage(case, algorithm, time.time_ns() // 1000))

    try:
        with caplog.at_level(logging.WARNING, logger="luathrottle"):
            response = await respond(view, request)
            state, ttl = django_store.get_with_ttl(key)
            second = await respond(view, request)
    finally:
        if mode == "async":
            await backend.aclose()
    assert response.status_code == 200
    assert response["X-RateLimit-Remaining"] == "4"
    assert 0 < int(response["X-RateLimit-Reset"]) <= 60
    assert "Retry-After" not in response
    if django_store.client is None:
        # set_many takes whole seconds: the TTL is the state's, rounded up.
        ttl = max(ttl - 1000, 1)
    assert_fresh_state(algorithm, state, ttl, time.time_ns() // 1000)
    assert second["X-RateLimit-Remaining"] == "3"
    assert len(warnings_about(caplog, key)) == 1


def test_django_cache_of_another_type_counts_as_absent(django_store, caplog):
    limiter = Limiter(
        LIMIT,
        algorithm=LeakyBucket(),
        backend=SyncDjangoCache(django_store.alias, breaker=False),
    )
    [key] = limiter_keys(limiter, "client")
    django_store.other_type(key)
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        assert_admitted_as_fresh(limiter.hit("client"))
    assert len(warnings_about(caplog, key)) == 1
    assert limiter.hit("client").remaining == LIMIT.max_requests - 2


def test_a_hashed_scripts_django_cache_of_another_type_counts_as_absent(
    django_store, caplog
):
    limiter = Limiter(LIMIT, backend=SyncDjangoCache(django_store.alias, breaker=False))
    [key] = limiter_keys(limiter, "client")
    django_store.other_type(key)
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        assert_admitted_as_fresh(limiter.hit("client"))
    assert len(warnings_about(caplog, key)) == 1
    assert limiter.hit("client").remaining == LIMIT.max_requests - 2


@pytest.mark.parametrize("value", [-5, 10**400, 1.5, b"5"])
def test_staged_cache_values_that_are_no_string(value, caplog):
    """A Redis-backed cache holds an int as its digits, so the staged path
    reads one as such (and warns when they are no state of ours); other
    Python values are a key of another type, absent state as well. Where
    the state belongs: its key, or a hashed script's hash, which no such
    value is."""
    limiter = Limiter(
        LIMIT,
        algorithm=LeakyBucket(),
        backend=SyncDjangoCache("default", breaker=False),
    )
    [key] = limiter_keys(limiter, "client")
    store_key, _ = locate(key)
    caches["default"].set(store_key, value, None)
    try:
        with caplog.at_level(logging.WARNING, logger="luathrottle"):
            assert limiter.hit("client").remaining == 4
        assert len(warnings_about(caplog, key)) == 1
        assert limiter.hit("client").remaining == 3
    finally:
        caches["default"].delete(store_key)


@pytest.mark.parametrize(
    "value",
    [
        -5,
        1.5,
        {"fields": {"1/60": "5"}, "expires_at_ms": None},
        b"",
        b"no field",
        b"\0field without a value\0",
        b"\0field\0value",
        b"soon\0",
        b"-1\0",
        b"1e3\0",
        b" 12\0",
        b"10000000000000\0",
        b"\xff\xfe\0",
    ],
)
def test_staged_hash_values_that_are_no_hash_of_ours(value, caplog):
    """Whatever the cache holds where a hashed script keeps an identity's
    hash, if it is no hash as the staged path caches one, no limit can read
    it: it counts as absent and the next hit replaces it."""
    limiter = Limiter(LIMIT, backend=SyncDjangoCache("default", breaker=False))
    [key] = limiter_keys(limiter, "client")
    store_key, _ = locate(key)
    caches["default"].set(store_key, value, None)
    try:
        with caplog.at_level(logging.WARNING, logger="luathrottle"):
            assert limiter.hit("client").remaining == 4
        assert len(warnings_about(caplog, key)) == 1
        assert limiter.hit("client").remaining == 3
    finally:
        caches["default"].delete(store_key)


# What the scripts reply, decoded.


def test_a_reply_names_unreadable_limits_after_its_fields(caplog):
    limits = [Limit(5, 60), Limit(10, 60), Limit(20, 60)]
    fields = [1, 5, 4, 60_000_000, 0] + [1, 10, 9, 60_000_000, 0] * 2
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        decision = Decision.from_reply(limits, [*fields, 1, 3], ["k1", "k2", "k3"])
    assert decision == Decision.from_reply(limits, fields)
    assert [r.getMessage().split()[3] for r in caplog.records] == ["k1", "k3"]


@pytest.mark.parametrize("tail", [[0], [4], [2, 1], [1, 1], [1, 2, 3, 3]])
def test_a_reply_that_lists_other_limits_is_a_value_error(tail):
    limits = [Limit(5, 60), Limit(10, 60), Limit(20, 60)]
    with pytest.raises(ValueError, match="fields"):
        Decision.from_reply(limits, [1, 5, 4, 0, 0] * 3 + tail)
