"""TokenBucket's state layout (state tb3): every limit of an identity is a
field of one hash, whose life is extended by blocks of a full bucket
(lua/token_bucket.lua, "Expiry"), on the real Redis and the embedded
backend.

Time moves through the clock option (the embedded backend's keyspace
follows it; on Redis, expiries are counted on the server's clock, so the
checks there are of what a call sets, never of time passing). A full bucket
here is F = burst * interval = 2 tokens of 5 s = 10 s, and the clock starts
on a multiple of it.
"""

import logging

import pytest

from luathrottle import Limit, Limiter, TokenBucket
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from states import locate, read_state, state_ttl, store_keys
from test_hostile_state import warnings_about

#: A token every 5 s, two in a full bucket: F = 10 s.
SHORT = Limit(2, 10, name="short")
#: A token every 60 s, three in a full bucket: F = 180 s.
LONG = Limit(3, 180, name="long")
F_MS = 10_000


@pytest.fixture(params=["memory", "redis"])
def backend(request, clock):
    if request.param == "memory":
        return MemoryBackend(clock=clock)
    client = request.getfixturevalue("redis_client")
    client.flushdb()
    return SyncRedis(client)


def memory(backend) -> bool:
    return isinstance(backend, MemoryBackend)


def command(backend, *words):
    if memory(backend):
        return backend.command(*words)
    return backend.client.execute_command(*words)


def type_of(backend, key) -> str:
    """TYPE of ``key``."""
    if memory(backend):
        return str(backend.command("TYPE", key)[0])
    return str(backend.client.type(key).decode())


def limiter_of(backend, clock, limits=(SHORT,), burst=None):
    return Limiter(
        list(limits), algorithm=TokenBucket(burst), backend=backend, clock=clock
    )


def assert_ttl(backend, key, expected_ms):
    """The hash's PTTL is what the last extension set: exactly on the
    embedded backend, whose clock is the limiter's; on Redis, that less the
    few milliseconds the test took."""
    ttl = state_ttl(backend, key)
    if memory(backend):
        assert ttl == expected_ms
    else:
        assert expected_ms - 2_000 < ttl <= expected_ms


def test_a_hit_within_a_block_leaves_the_expiry_alone(backend, clock):
    """Four tokens of 5 s, F = 20 s. The first hit writes a bucket full in
    5 s, in block 0: the hash lives to the end of block 2, 40 s. A hit 3 s
    later, whose bucket is full at 10 s, still in block 0, sends no PEXPIRE:
    the expiry stays where it was, while the clock moves on."""
    limiter = limiter_of(backend, clock, burst=4)
    [key] = limiter.state_keys("k")
    assert limiter.hit("k").allowed
    assert_ttl(backend, key, 40_000)
    if not memory(backend):
        # On Redis a PEXPIRE would show as a TTL set back up: put it lower
        # by hand, where only a new PEXPIRE would move it.
        backend.client.pexpire(locate(key)[0], 15_000)
    clock.advance(3)
    assert limiter.hit("k").allowed
    assert read_state(backend, key).startswith(f"{round(clock() * 1e6) + 7_000_000}:")
    assert_ttl(backend, key, 37_000 if memory(backend) else 15_000)


def test_a_hit_in_a_later_block_extends_the_expiry(backend, clock):
    limiter = limiter_of(backend, clock)
    [key] = limiter.state_keys("k")
    start = clock()
    assert limiter.hit("k").allowed  # full at +5 s: block 0
    clock.advance(6)
    if not memory(backend):
        backend.client.pexpire(locate(key)[0], 15_000)
    assert limiter.hit("k").allowed  # full at +11 s: block 1
    # To the end of block 3, 30 s after the start.
    assert_ttl(backend, key, round((start + 30 - clock()) * 1000))


def test_the_hash_outlives_every_state_it_holds(backend, clock):
    """Whatever the hits, the hash lives at least a full bucket past the
    time each of its buckets is full, and at most three full buckets past
    the call."""
    limiter = limiter_of(backend, clock, (SHORT, LONG))
    keys = limiter.state_keys("k")
    for step in (0, 1, 4, 2.5, 9, 0.5, 3, 7, 11, 0, 1, 30):
        clock.advance(step)
        limiter.hit("k")
        now_us = round(clock() * 1_000_000)
        ttl = state_ttl(backend, keys[0])
        assert ttl <= 3 * 180_000 + 1
        for key, full_ms in zip(keys, (F_MS, 180_000), strict=True):
            full_at = int(read_state(backend, key).split(":")[0])
            needed = (full_at - now_us) // 1000 + full_ms
            if memory(backend):
                assert ttl >= needed
            else:
                assert ttl >= needed - 2_000


def test_the_hash_expires_once_no_state_matters(clock):
    """On the embedded backend, whose clock is the limiter's: the hash is
    gone three full buckets after a lone hit, and a hit then is fresh."""
    backend = MemoryBackend(clock=clock)
    limiter = limiter_of(backend, clock)
    [key] = limiter.state_keys("k")
    limiter.hit("k")  # full at +5 s, in block 0 of F = 10 s
    clock.advance(19.999)
    assert read_state(backend, key) is not None
    clock.advance(0.001)
    assert read_state(backend, key) is None
    assert backend.command("DBSIZE") == 0
    assert limiter.hit("k").remaining == 1


def test_a_penalty_extends_the_hash_to_its_end(backend, clock):
    limiter = limiter_of(backend, clock, (Limit(2, 10, penalty=100),))
    [key] = limiter.state_keys("k")
    limiter.hit("k", cost=2)
    assert not limiter.hit("k").allowed
    # Penalised until +100 s, block 10 of F = 10 s: to its end, 120 s.
    assert_ttl(backend, key, 120_000)


def test_reset_deletes_the_limiters_fields_and_the_empty_hash(backend, clock):
    limiter = limiter_of(backend, clock, (SHORT, LONG))
    other = limiter_of(backend, clock, (Limit(5, 60, name="other"),))
    limiter.hit("k")
    other.hit("k")
    [hash_key] = store_keys(limiter.state_keys("k"))
    assert store_keys(other.state_keys("k")) == {hash_key}
    assert all(
        read_state(backend, key)
        for key in [*limiter.state_keys("k"), *other.state_keys("k")]
    )
    limiter.reset("k")
    assert [read_state(backend, key) for key in limiter.state_keys("k")] == [None] * 2
    assert read_state(backend, other.state_keys("k")[0]) is not None
    assert [item.remaining for item in limiter.peek("k").limits] == [2, 3]
    other.reset("k")
    assert type_of(backend, hash_key) == "none"


@pytest.mark.parametrize("kind", ["string", "list"])
def test_a_key_of_another_type_at_the_hash(backend, clock, kind, caplog):
    """Every limit of the identity reads it as absent; a peek and a hit that
    a limit denies leave it as it is, and so does a reset (HDEL fails on
    it, and is ignored); a hit every limit admits replaces it with the hash,
    which expires."""
    limiter = limiter_of(backend, clock, (SHORT, LONG))
    keys = limiter.state_keys("k")
    [hash_key] = store_keys(keys)
    if kind == "string":
        command(backend, "SET", hash_key, "x")
    else:
        command(backend, "RPUSH", hash_key, "1")
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        assert [item.remaining for item in limiter.peek("k").limits] == [2, 3]
        # Three tokens: more than the short bucket holds.
        assert not limiter.hit("k", cost=3).allowed
        limiter.reset("k")
        assert type_of(backend, hash_key) == kind
        decision = limiter.hit("k")
    assert decision.allowed
    assert [item.remaining for item in decision.limits] == [1, 2]
    for key in keys:
        # The peek, the denied hit and the admitted hit met it; the reset
        # replies nothing.
        assert len(warnings_about(caplog, key)) == 3
    assert type_of(backend, hash_key) == "hash"
    assert all(read_state(backend, key) for key in keys)
    assert 0 < state_ttl(backend, keys[0]) <= 3 * 180_000
    assert [item.remaining for item in limiter.hit("k").limits] == [0, 1]
