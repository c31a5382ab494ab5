"""SimpleRate's state layout: every limit of an identity is a field of one
hash (issue 16 item 3), on Redis, fakeredis, the embedded backend and a
staged Django cache alike.

One call reads each run of limits sharing a hash with one HMGET and writes
it with one HSET; the hash lives until the last window of any of its fields
ends; a reset deletes only the limiter's own fields; a key of another type
where the hash belongs is deleted before the next write, once.
"""

import time

import fakeredis
import pytest
from django.core.cache import caches
from django.http import HttpResponse

from luathrottle import Limit, Limiter, SimpleRate
from luathrottle.backends.django_cache import SyncDjangoCache
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from luathrottle.decision import Decision
from luathrottle.django import SyncThrottle, throttle
from luathrottle.django.cache_keys import RemoteAddr
from states import (
    limiter_keys,
    locate,
    read_state,
    staged_hash,
    store_keys,
    write_state,
)

SCRIPT = SimpleRate().script
LIMITS = [Limit(2, 60), Limit(5, 3600)]


@pytest.fixture(params=["memory", "fakeredis", "redis", "staged"])
def backend(request, clock):
    """Each sync store in turn, the staged LocMem cache among them."""
    if request.param == "memory":
        return MemoryBackend(clock=clock)
    if request.param == "fakeredis":
        return SyncRedis(fakeredis.FakeRedis())
    if request.param == "redis":
        return SyncRedis(request.getfixturevalue("redis_client"))
    caches["default"].clear()
    return SyncDjangoCache("default", breaker=False)


def call(keys, limits, mode="hit"):
    """A SimpleRate call deciding ``limits[i]`` on the state ``keys[i]``."""
    args = SimpleRate().pack_args(mode, 1, None, limits)
    return SCRIPT.words(keys, args)


def names(identity, scope=""):
    limiter = Limiter(LIMITS, algorithm=SimpleRate(), prefix="lt", scope=scope)
    return limiter.state_keys(identity)


def test_a_state_key_splits_into_its_identitys_hash_and_a_field():
    first, second = names("alice", "view")
    assert locate(first)[0] == locate(second)[0] == first.partition("}")[0] + "}"
    keys, args = SCRIPT.words([first, second], ["hit", "1", ""])
    assert keys == [locate(first)[0]] * 2
    assert args == ["hit", "1", "", locate(first)[1], locate(second)[1]]


def test_limits_of_several_identities_in_one_call(request, clock):
    """Runs of one hash, then another, then the first again: each run is
    read and written on its own hash, and both hashes hold their fields."""
    backend = MemoryBackend(clock=clock)
    alice, bob = names("alice"), names("bob")
    keys, limits = [alice[0], bob[0], alice[1]], [*LIMITS[:1], *LIMITS]
    script_keys, args = call(keys, limits)
    for spent in (1, 2):
        reply = backend.run_script(SCRIPT, script_keys, args)
        decision = Decision.from_reply(limits, reply)
        remaining = [item.remaining for item in decision.limits]
        assert remaining == [2 - spent, 2 - spent, 5 - spent]
    assert read_state(backend, alice[0]) is not None
    assert read_state(backend, alice[1]) is not None
    assert read_state(backend, bob[0]) is not None
    assert read_state(backend, bob[1]) is None
    assert backend.command("DBSIZE") == 2


def test_a_foreign_key_in_two_runs_is_deleted_once(backend):
    """A key of another type where alice's hash belongs is deleted before
    the first run writes, and the second run keeps what the first wrote."""
    alice, bob = names("alice"), names("bob")
    hash_key = locate(alice[0])[0]
    if isinstance(backend, SyncDjangoCache):
        caches["default"].set(hash_key, "a string", None)
    elif isinstance(backend, MemoryBackend):
        backend.command("SET", hash_key, "a string")
    else:
        backend.client.set(hash_key, "a string")
    script_keys, args = call([alice[0], bob[0], alice[1]], [*LIMITS[:1], *LIMITS])
    reply = backend.run_script(SCRIPT, script_keys, args)
    assert reply[15:] == [1, 3]  # both of alice's limits were unreadable
    if isinstance(backend, SyncDjangoCache):
        fields, _ = staged_hash(caches["default"].get(hash_key))
        assert set(fields) == {locate(alice[0])[1], locate(alice[1])[1]}
        return
    assert read_state(backend, alice[0]) is not None
    assert read_state(backend, alice[1]) is not None


def test_one_identitys_limits_are_one_key(backend):
    limiter = Limiter(LIMITS, backend=backend)
    for _ in range(2):
        assert limiter.hit("k").allowed
    assert not limiter.hit("k").allowed
    keys = limiter_keys(limiter, "k")
    assert len(store_keys(keys)) == 1
    if isinstance(backend, SyncDjangoCache):
        fields, expires_ms = staged_hash(caches["default"].get(locate(keys[0])[0]))
        assert set(fields) == {locate(key)[1] for key in keys}
        assert expires_ms is not None
        assert expires_ms > time.time() * 1000
        return
    assert all(read_state(backend, key) for key in keys)


def test_reset_deletes_only_the_limiters_own_fields(backend):
    """Two limiters on one prefix share an identity's hash; one's reset
    leaves the other's counts, and the last field gone takes the hash."""
    short = Limiter(LIMITS[0], backend=backend)
    long = Limiter(LIMITS[1], backend=backend)
    short.hit("k")
    long.hit("k")
    short.reset("k")
    assert short.peek("k").remaining == 2
    assert long.peek("k").remaining == 4
    long.reset("k")
    assert long.peek("k").remaining == 5
    [hash_key] = store_keys(limiter_keys(long, "k"))
    if isinstance(backend, SyncDjangoCache):
        assert caches["default"].get(hash_key) is None
    elif isinstance(backend, MemoryBackend):
        assert backend.command("DBSIZE") == 0
    else:
        assert backend.client.exists(hash_key) == 0


def test_the_staged_hash_keeps_its_expiry_and_extends_it(clock):
    """A cache cannot tell a key's time to live, so the staged hash holds
    its expiry: a shorter window opening later keeps the longer life."""
    caches["default"].clear()
    backend = SyncDjangoCache("default", breaker=False)
    now_us = time.time_ns() // 1000
    long_key, short_key = names("k")[1], names("k")[0]
    for keys in ([long_key], [short_key]):
        limits = [LIMITS[1]] if keys == [long_key] else [LIMITS[0]]
        args = SimpleRate().pack_args("hit", 1, now_us, limits)
        backend.run_script(SCRIPT, *SCRIPT.words(keys, args))
    fields, expires_ms = staged_hash(caches["default"].get(locate(long_key)[0]))
    # The keyspace reads the time a moment after now_us.
    assert expires_ms is not None
    assert 3_599_000 < expires_ms - now_us // 1000 <= 3_601_000
    assert len(fields) == 2


@pytest.mark.parametrize("zeros", ["", "0", "000"])
def test_a_live_window_reads_alike_with_leading_zeros(sync_backend, clock, zeros):
    """A hit on a live window as a hit writes it writes the window's end
    back as it read it; one that ends the same with leading zeros (no hit
    writes those) reads as the same window and count, and the hit writes
    its end as a hit would."""
    limiter = Limiter(10, 60, algorithm=SimpleRate(), backend=sync_backend, clock=clock)
    [key] = limiter_keys(limiter, "k")
    ends_ms = int(clock.now * 1000) + 30_000
    write_state(sync_backend, key, f"{zeros}{ends_ms}:3:60")
    decision = limiter.hit("k")
    assert decision.allowed
    assert decision.remaining == 6
    assert decision.reset_after == pytest.approx(30)
    assert read_state(sync_backend, key) == f"{ends_ms}:4:60"


def test_a_views_throttles_on_one_identity_share_its_hash(rf, redis_client):
    """Three throttles of one view counting one client address: one hash,
    a field per throttle."""
    redis_client.flushdb()
    backend = SyncRedis(redis_client)
    items = [
        SyncThrottle(limit, duration, cache_key=RemoteAddr(), backend=backend)
        for limit, duration in ((5, 60), (100, 3600), (1000, 86400))
    ]

    @throttle(*items, allow_unsafe_cache=None)
    def view(request):
        return HttpResponse("inside")

    request = rf.get("/", REMOTE_ADDR="192.0.2.7")
    assert view(request).status_code == 200
    [stored] = redis_client.keys("*")
    assert redis_client.hlen(stored) == 3
    assert 86_399_000 < redis_client.pttl(stored) <= 86_400_000
