"""SlidingWindow's state layout: every limit of an identity is a field of
one hash (as SimpleRate's, test_hash_layout.py), on the real Redis, fakeredis
and the embedded backend.

The hash's life is extended only when a write needs it (see the Expiry part
of ``lua/sliding_window.lua``): when a hit opens a window of its limit (or
meets a state that was absent, unreadable or of another duration), to two
durations after that window starts, and when a penalty starts, to its end.
A hit within the window its state counts leaves the hash's life alone. Time
moves through the limiter's clock option only.
"""

import logging
import random

import pytest

from luathrottle import Limit, Limiter, SlidingWindow
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from states import limiter_keys, locate, read_state, state_ttl, store_keys, write_state
from test_hostile_state import Store, warnings_about

#: Window indexes count from here, in whole durations.
EPOCH_US = 1_700_000_000_000_000


def to_window_start(clock, duration):
    """Move the clock to the next multiple of duration since 1970."""
    clock.now = (int(clock.now) // duration + 1) * duration


def pexpire(backend, key, ms):
    """Shorten the life of the hash that holds ``key``'s state, as an
    operator might: what the scripts then do shows in its TTL."""
    hash_key, _ = locate(key)
    if isinstance(backend, MemoryBackend):
        backend.command("PEXPIRE", hash_key, ms)
    else:
        backend.client.pexpire(hash_key, ms)


def hash_type(backend, key):
    hash_key, _ = locate(key)
    if isinstance(backend, MemoryBackend):
        return str(backend.command("TYPE", hash_key)[0])
    return backend.client.type(hash_key).decode()


def matters_until_us(state, duration):
    """When a state written for a limit of ``duration`` seconds stops
    mattering: two durations after its window starts, or its penalty's end
    if later."""
    index, _, _, _, *ends = state.split(":")
    duration_us = duration * 1_000_000
    window = int(index) + EPOCH_US // duration_us
    until = (window + 2) * duration_us
    return max([until, *(int(end) for end in ends)])


def test_one_identitys_limits_are_one_hash(sync_backend, clock):
    limiter = Limiter(
        ["2/second", "4/minute", "9/hour"],
        algorithm=SlidingWindow(),
        backend=sync_backend,
        clock=clock,
    )
    assert limiter.hit("k").allowed
    keys = limiter_keys(limiter, "k")
    assert len(store_keys(keys)) == 1
    assert hash_type(sync_backend, keys[0]) == "hash"
    assert all(read_state(sync_backend, key) for key in keys)
    assert [item.remaining for item in limiter.peek("k").limits] == [1, 3, 8]


def test_a_hit_within_a_window_leaves_the_hashs_life_alone(sync_backend, clock):
    """Shortened by hand to 100 s, the hash keeps that life through hits of
    the window its state counts; the first hit of the next window extends
    it to two minutes after that window starts."""
    limiter = Limiter(
        10, 60, algorithm=SlidingWindow(), backend=sync_backend, clock=clock
    )
    [key] = limiter_keys(limiter, "k")
    to_window_start(clock, 60)
    clock.advance(10)
    assert limiter.hit("k").allowed
    assert 109_000 < state_ttl(sync_backend, key) <= 110_000
    pexpire(sync_backend, key, 100_000)
    clock.advance(5)
    assert limiter.hit("k").allowed
    assert limiter.hit("k", cost=3).allowed
    assert state_ttl(sync_backend, key) <= 100_000
    clock.advance(50)  # 5 s into the next window
    assert limiter.hit("k").allowed
    assert 114_000 < state_ttl(sync_backend, key) <= 115_000


def test_a_hit_of_the_window_written_sends_no_expiry(sync_backend, clock):
    """A hash someone wrote without an expiry keeps none while its state is
    of now's window: the hit writes the field and nothing else. A state of
    the window before gets the hash an expiry."""
    limiter = Limiter(
        10, 60, algorithm=SlidingWindow(), backend=sync_backend, clock=clock
    )
    [key] = limiter_keys(limiter, "k")
    to_window_start(clock, 60)
    clock.advance(30)
    index = int(clock.now) // 60 - EPOCH_US // 60_000_000
    write_state(sync_backend, key, f"{index}:2:3:60")
    decision = limiter.hit("k")
    assert decision.allowed
    assert read_state(sync_backend, key) == f"{index}:2:4:60"
    assert state_ttl(sync_backend, key) == -1
    write_state(sync_backend, key, f"{index - 1}:2:3:60")
    assert limiter.hit("k").allowed
    assert read_state(sync_backend, key) == f"{index}:3:1:60"
    assert 89_000 < state_ttl(sync_backend, key) <= 90_000


@pytest.mark.parametrize("length", [20, 21, 22, 23])
def test_a_state_of_this_window_reads_alike_at_any_length(sync_backend, clock, length):
    """The script reads a state of at most 22 characters without checking
    each field's length; a longer one, here its previous count padded with
    zeros across that bound (to 16 digits, the most the script reads), reads
    as the same counts, and a hit writes back the strings it read with the
    current count added to."""
    limiter = Limiter(
        10, 60, algorithm=SlidingWindow(), backend=sync_backend, clock=clock
    )
    [key] = limiter_keys(limiter, "k")
    to_window_start(clock, 60)
    clock.advance(30)
    index = int(clock.now) // 60 - EPOCH_US // 60_000_000
    head = f"{index}:{'0' * (length - len(f'{index}:4:3:60'))}4"
    assert len(f"{head}:3:60") == length
    write_state(sync_backend, key, f"{head}:3:60")
    decision = limiter.hit("k")
    assert decision.allowed
    assert decision.remaining == 4  # 10 - 3 - 1, less half of 4
    assert read_state(sync_backend, key) == f"{head}:4:60"


def test_a_shorter_limits_window_never_shortens_the_hashs_life(sync_backend, clock):
    """A 10-second window opening under an hour's count extends nothing:
    the hash lives as long as the hour's count weighs."""
    limiter = Limiter(
        ["5/10s", "50/hour"],
        algorithm=SlidingWindow(),
        backend=sync_backend,
        clock=clock,
    )
    keys = limiter_keys(limiter, "k")
    to_window_start(clock, 3600)
    assert limiter.hit("k").allowed
    assert 7_199_000 < state_ttl(sync_backend, keys[0]) <= 7_200_000
    clock.advance(25)  # a 10-second window two windows on
    assert limiter.hit("k").allowed
    assert state_ttl(sync_backend, keys[0]) > 7_100_000


def test_a_penalty_that_starts_extends_the_hash_to_its_end(sync_backend, clock):
    """A penalty of an hour on a 2-per-10-seconds limit: the hash lives
    until the penalty ends, far beyond the window's weight."""
    limiter = Limiter(
        Limit(2, 10, penalty=3600),
        algorithm=SlidingWindow(),
        backend=sync_backend,
        clock=clock,
    )
    [key] = limiter_keys(limiter, "k")
    to_window_start(clock, 10)
    assert limiter.hit("k").allowed
    assert limiter.hit("k").allowed
    assert state_ttl(sync_backend, key) <= 20_000
    assert not limiter.hit("k").allowed
    assert 3_599_000 < state_ttl(sync_backend, key) <= 3_600_000
    clock.advance(1800)
    denied = limiter.hit("k")
    assert not denied.allowed
    assert denied.retry_after == pytest.approx(1800)


@pytest.mark.parametrize("seed", range(4))
def test_the_hash_lives_until_its_latest_state_stops_mattering(
    sync_backend, clock, seed
):
    """Random hits, peeks and refunds on three limits (one with a penalty),
    both countings: after each call the hash lives at least until every
    field's state stops mattering. A real server counts its TTL down on its
    own clock, not the limiter's: the real time the test took is allowed."""
    rng = random.Random(seed)
    limits = [Limit(3, 1), Limit(5, 4, penalty=7), Limit(8, 13)]
    limiters = [
        Limiter(
            limits,
            algorithm=SlidingWindow(),
            backend=sync_backend,
            clock=clock,
            counting=counting,
        )
        for counting in ("all_or_nothing", "each")
    ]
    keys = limiter_keys(limiters[0], "k")
    on_redis = isinstance(sync_backend, SyncRedis)
    slack_ms = 1_000 if on_redis else 0
    extended = 0
    for _ in range(300):
        clock.advance(rng.choice([0, 0.001, 0.3, 0.9, 2.5, 6, 15]))
        limiter = rng.choice(limiters)
        roll = rng.random()
        if roll < 0.8:
            limiter.hit("k", cost=rng.randint(1, 4))
        elif roll < 0.9:
            limiter.peek("k")
        else:
            limiter.refund("k", rng.randint(1, 3))
        now_us = round(clock() * 1_000_000)
        states = [read_state(sync_backend, key) for key in keys]
        needed_ms = max(
            (
                matters_until_us(state, limit.duration) - now_us
                for state, limit in zip(states, limits, strict=True)
                if state is not None
            ),
            default=0,
        )
        if needed_ms <= 0:
            continue
        ttl = state_ttl(sync_backend, keys[0])
        assert ttl > 0
        assert ttl * 1000 >= needed_ms - slack_ms * 1000
        extended += 1
    assert extended > 100


def test_reset_deletes_only_the_limiters_own_fields(sync_backend, clock):
    """Two limiters on one prefix share an identity's hash; one's reset
    leaves the other's counts, and the last field gone takes the hash."""
    short = Limiter("2/minute", algorithm=SlidingWindow(), backend=sync_backend)
    long = Limiter("5/hour", algorithm=SlidingWindow(), backend=sync_backend)
    short.hit("k")
    long.hit("k")
    [short_key], [long_key] = limiter_keys(short, "k"), limiter_keys(long, "k")
    assert locate(short_key)[0] == locate(long_key)[0]
    short.reset("k")
    assert read_state(sync_backend, short_key) is None
    assert short.peek("k").remaining == 2
    assert long.peek("k").remaining == 4
    long.reset("k")
    assert long.peek("k").remaining == 5
    assert hash_type(sync_backend, long_key) == "none"


@pytest.fixture(params=["memory", "fakeredis", "redis"])
def store(request) -> Store:
    return Store(request.param, request)


@pytest.mark.parametrize("kind", ["string", "list"])
def test_a_key_of_another_type_at_the_hash_counts_as_absent(store, kind, caplog):
    """A peek reads every limit as fresh and writes nothing; a hit a limit
    denies (a cost above it) writes nothing; a reset leaves the key, which
    holds none of our state; the next admitted hit replaces it with the
    hash, and the hash expires. Every call that met it names each limit."""
    strict = Limit(2, 30, name="strict")
    limiter = Limiter(
        [Limit(5, 60), strict], algorithm=SlidingWindow(), backend=store.backend
    )
    keys = limiter_keys(limiter, "client")
    store.other_type(keys[0], kind)
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        peeked = limiter.peek("client")
        assert [item.remaining for item in peeked.limits] == [5, 2]
        assert store.type_of(keys[0]) == kind
        denied = limiter.hit("client", cost=3)
        assert not denied.allowed
        assert store.type_of(keys[0]) == kind
        limiter.reset("client")
        assert store.type_of(keys[0]) == kind
        admitted = limiter.hit("client")
        assert [item.remaining for item in admitted.limits] == [4, 1]
    for key in keys:
        assert len(warnings_about(caplog, key)) == 3
    assert store.type_of(keys[0]) == "hash"
    assert all(store.get(key) for key in keys)
    assert 0 < store.pttl(keys[0]) <= 120_000
    assert [item.remaining for item in limiter.hit("client").limits] == [3, 0]
