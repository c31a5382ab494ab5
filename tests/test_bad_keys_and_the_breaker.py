"""One bad key is that key's problem: errors that the store answered for one
call's keys (a string where a hash belongs: WRONGTYPE) are a
``ScriptError``, which no circuit breaker counts, so every other identity
keeps being decided by the store. Failures of the store itself (a dead
server, OOM) still open the breaker.

Every script of ours reads a key of another type where an identity's hash
belongs as absent state (``test_hostile_state``), so the bad keys here are
those of a strict LeakyBucket, whose HMGET still fails on them: a script
that fails on one call's keys stands for any error the store answers for
them."""

import functools
import uuid

import pytest
import redis
from django.core.cache import caches
from django.http import HttpResponse

from luathrottle import (
    AsyncLimiter,
    BackendError,
    CircuitBreaker,
    LeakyBucket,
    Limiter,
    Reason,
    ScriptError,
)
from luathrottle.backends.django_cache import SyncDjangoCache
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import SyncThrottle, throttle
from luathrottle.scripts import Script, get_script
from states import limiter_keys

BAD_HITS = 12


@functools.cache
def strict_script() -> Script:
    """LeakyBucket's script with an HMGET that fails on a key of another
    type where the identity's hash belongs."""
    source = get_script("leaky_bucket").source
    strict = source.replace("redis.pcall('HMGET'", "redis.call('HMGET'").replace(
        "script: leaky_bucket", "script: strict_leaky_bucket"
    )
    # The decision's HMGET and the refund's.
    assert strict.count("redis.call('HMGET'") == 2
    return Script.from_source(strict, filename="strict_leaky_bucket.lua")


def hash_of(limiter, identity: str) -> str:
    """The key of ``identity``'s hash, where a key of another type makes
    the strict script fail."""
    [key] = limiter_keys(limiter, identity)
    return str(limiter.script.words([key], [])[0][0])


class StrictLeakyBucket(LeakyBucket):
    """LeakyBucket, but WRONGTYPE on a key of another type."""

    @property
    def script(self) -> Script:
        return strict_script()


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_wrongtype_key_never_opens_the_breaker_on_redis(redis_client):
    breaker = CircuitBreaker(failures=3, cool_off=60)
    limiter = Limiter(
        5,
        60,
        algorithm=StrictLeakyBucket(),
        backend=SyncRedis(redis_client, breaker=breaker),
        prefix=uuid.uuid4().hex[:8],
        on_failure="allow",
    )
    redis_client.set(hash_of(limiter, "bad"), "not a hash")
    for _ in range(BAD_HITS):
        assert limiter.hit("bad").reason == Reason.STORE_UNAVAILABLE
    assert breaker.state == "closed"
    decisions = [limiter.hit("good") for _ in range(6)]
    assert [item.allowed for item in decisions] == [True] * 5 + [False]
    assert decisions[-1].reason == Reason.LIMIT_EXCEEDED


def test_the_bad_call_itself_raises_a_script_error(redis_client):
    backend = SyncRedis(redis_client)
    limiter = Limiter(
        5, 60, algorithm=StrictLeakyBucket(), backend=backend, prefix="wrongtype"
    )
    redis_client.set(hash_of(limiter, "bad"), "not a hash")
    with pytest.raises(ScriptError, match="WRONGTYPE"):
        limiter.hit("bad")
    assert limiter.hit("good").allowed


async def test_async_wrongtype_never_opens_the_breaker(async_redis_client):
    breaker = CircuitBreaker(failures=3, cool_off=60)
    limiter = AsyncLimiter(
        5,
        60,
        algorithm=StrictLeakyBucket(),
        backend=AsyncRedis(async_redis_client, breaker=breaker),
        prefix=uuid.uuid4().hex[:8],
        on_failure="deny",
    )
    await async_redis_client.set(hash_of(limiter, "bad"), "not a hash")
    for _ in range(BAD_HITS):
        decision = await limiter.hit("bad")
        assert (decision.allowed, decision.reason) == (False, "store_unavailable")
    assert breaker.state == "closed"
    assert (await limiter.hit("good")).reason is None


def test_a_script_error_in_the_half_open_trial_closes_the_breaker(server):
    ticks = Ticks()
    breaker = CircuitBreaker(failures=2, cool_off=10, clock=ticks)
    client = redis.Redis.from_url(server.url, socket_timeout=0.5)
    limiter = Limiter(
        5,
        60,
        algorithm=StrictLeakyBucket(),
        backend=SyncRedis(client, breaker=breaker),
        on_failure="allow",
    )
    server.stop()
    for _ in range(2):
        limiter.hit("good")
    assert breaker.state == "open"
    server.start()
    redis.Redis.from_url(server.url).set(hash_of(limiter, "bad"), "not a hash")
    ticks.now += 10
    assert limiter.hit("bad").reason == Reason.STORE_UNAVAILABLE
    assert breaker.state == "closed"
    assert limiter.hit("good").reason is None


def test_out_of_memory_is_the_stores_failure_and_counts(server):
    ticks = Ticks()
    breaker = CircuitBreaker(failures=3, cool_off=10, clock=ticks)
    admin = redis.Redis.from_url(server.url)
    limiter = Limiter(
        5,
        60,
        backend=SyncRedis(redis.Redis.from_url(server.url), breaker=breaker),
        on_failure="allow",
    )
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)
    for index in range(3):
        assert limiter.hit(f"user{index}").reason == Reason.STORE_UNAVAILABLE
    assert breaker.state == "open"
    admin.config_set("maxmemory", 0)
    ticks.now += 10
    assert limiter.hit("user9").reason is None
    assert breaker.state == "closed"


def test_the_embedded_backend_raises_a_script_error_for_a_wrong_type():
    backend = MemoryBackend()
    limiter = Limiter(5, 60, algorithm=StrictLeakyBucket(), backend=backend)
    backend.command("SET", hash_of(limiter, "bad"), "not a hash")
    with pytest.raises(ScriptError, match="WRONGTYPE"):
        limiter.hit("bad")
    assert limiter.hit("good").allowed


@pytest.mark.parametrize("alias", ["default", "redis"])
def test_a_bad_cache_value_is_that_keys_problem_in_a_view(rf, alias):
    breaker = CircuitBreaker(failures=3, cool_off=60)
    backend = SyncDjangoCache(alias, breaker=breaker)
    scope = uuid.uuid4().hex
    item = SyncThrottle(
        2,
        60,
        algorithm=StrictLeakyBucket(),
        backend=backend,
        on_failure="deny",
        scope=scope,
    )

    @throttle(item, allow_unsafe_cache=None)
    def view(request):
        return HttpResponse("inside")

    bad = item.state_key(rf.get("/", REMOTE_ADDR="192.0.2.1"), "unused")
    assert bad is not None
    # Where the identity's hash belongs: the state key up to its hash tag.
    bad = bad.partition("}:")[0] + "}"
    if alias == "default":
        caches[alias].set(bad, {"not": "a hash"})
    else:
        cache = caches[alias]
        cache._cache.get_client(write=True).set(cache.make_key(bad), "not a hash")
    for _ in range(BAD_HITS):
        response = view(rf.get("/", REMOTE_ADDR="192.0.2.1"))
        assert response.status_code == 503
    assert breaker.state == "closed"
    codes = [view(rf.get("/", REMOTE_ADDR="192.0.2.2")).status_code for _ in "abc"]
    assert codes == [200, 200, 429]


def test_a_dead_store_still_opens_the_breaker():
    breaker = CircuitBreaker(failures=3, cool_off=60)
    backend = SyncRedis.from_url("redis://127.0.0.1:1/0", timeout=0.5, breaker=breaker)
    limiter = Limiter(5, 60, backend=backend, on_failure="allow")
    for _ in range(3):
        limiter.hit("k")
    assert breaker.state == "open"
    with pytest.raises(BackendError) as caught:
        Limiter(5, 60, backend=backend).hit("k")
    assert not isinstance(caught.value, ScriptError)
