"""LeakyBucket's hash: every limit of an identity is a field of one hash,
which lives at least as long as the latest state of any of its fields
matters, and whose expiry a hit moves only when its state's end reaches a
later block of full buckets (lua/leaky_bucket.lua, Expiry).

Time is driven by the limiter's clock option: on the embedded backend its
keyspace runs on the same clock, so a TTL is exact; on the real server the
commands the script ran are counted (INFO commandstats).
"""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Clock
from luathrottle import LeakyBucket, Limit, Limiter
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from states import locate, read_state, write_state

#: A request drains in 5 s; a full bucket, 20 s, is the block.
LIMIT = Limit(4, 20)
FULL_US = 20_000_000
#: The clock's start, at the start of a block.
START_US = 1_700_000_000_000_000


def limiter_on(backend, clock, limits=(LIMIT,)) -> Limiter:
    return Limiter(list(limits), algorithm=LeakyBucket(), backend=backend, clock=clock)


def hash_of(limiter: Limiter, identity: str = "k") -> str:
    return locate(limiter.state_keys(identity)[0])[0]


def now_us(clock: Clock) -> int:
    return round(clock() * 1_000_000)


def state_end(state: str) -> int:
    """When a state stops mattering: its bucket is empty, or its penalty
    ends, whichever is later."""
    parts = [int(part) for part in state.split(":")]
    return max(parts[0], parts[3] if len(parts) > 3 else 0)


def commands_run(client, *names: str) -> dict[str, int]:
    """How often each of ``names`` ran since the last reset of the stats,
    scripts' commands included."""
    stats = client.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in names}


# The steps of one identity's hits, 0 s, 2 s, 3 s and 4 s after the start:
# each hit's bucket empties 5 s after the last one, or 5 s after now if it
# had drained. The first three end within the first block (at 5, 10 and
# 15 s), the fourth in the next (at 20 s).
STEPS = [(0, 5), (2, 10), (3, 15), (4, 20)]


def test_a_hit_moves_the_expiry_only_when_its_state_reaches_a_later_block():
    clock = Clock(START_US / 1_000_000)
    backend = MemoryBackend(clock=clock)
    limiter = limiter_on(backend, clock)
    key = hash_of(limiter)
    expiries = []
    for at, ends in STEPS:
        clock.now = (START_US + at * 1_000_000) / 1_000_000
        assert limiter.hit("k").allowed
        [state] = [read_state(backend, name) for name in limiter.state_keys("k")]
        assert state_end(state) == START_US + ends * 1_000_000
        expiries.append(at * 1000 + backend.command("PTTL", key))
    # Made to live to the end of the block after the first state's, 40 s;
    # kept there while the states end in that block; moved to the end of
    # the block after the next, 60 s, by the state that ends in it.
    assert expiries == [40_000, 40_000, 40_000, 60_000]


@pytest.mark.redis
def test_a_hit_within_a_block_runs_no_expiry_command(redis_client):
    clock = Clock(START_US / 1_000_000)
    limiter = limiter_on(SyncRedis(redis_client), clock)
    runs = []
    for at, _ in STEPS:
        clock.now = (START_US + at * 1_000_000) / 1_000_000
        redis_client.config_resetstat()
        assert limiter.hit("k").allowed
        runs.append(commands_run(redis_client, "pttl", "pexpire", "hset", "hmget"))
    quiet = {"pttl": 0, "pexpire": 0, "hset": 1, "hmget": 1}
    extended = {"pttl": 1, "pexpire": 1, "hset": 1, "hmget": 1}
    assert runs == [extended, quiet, quiet, extended]
    # The server expires on its own clock, which is not the limiter's: the
    # hash lives the 56 s the last hit asked for (to 60 s after the start,
    # from 4 s after it), less the run's few ms.
    assert 55_000 < redis_client.pttl(hash_of(limiter)) <= 56_000


@pytest.mark.redis
def test_a_hash_with_a_longer_life_is_not_shortened(redis_client):
    clock = Clock(START_US / 1_000_000)
    limiter = limiter_on(SyncRedis(redis_client), clock)
    assert limiter.hit("k").allowed
    key = hash_of(limiter)
    redis_client.pexpire(key, 3_600_000)
    clock.advance(15)  # the state now ends in the next block
    redis_client.config_resetstat()
    assert limiter.hit("k").allowed
    assert commands_run(redis_client, "pttl", "pexpire") == {"pttl": 1, "pexpire": 0}
    assert redis_client.pttl(key) > 3_500_000


def test_a_penalty_that_starts_extends_the_hash_past_its_end(clock):
    backend = MemoryBackend(clock=clock)
    penalised = Limit(1, 20, penalty=600)
    limiter = limiter_on(backend, clock, [penalised])
    assert limiter.hit("k").allowed
    assert not limiter.hit("k").allowed
    [state] = [read_state(backend, name) for name in limiter.state_keys("k")]
    left_us = state_end(state) - now_us(clock)
    assert left_us == 600_000_000
    # To the end of the block after the one the penalty ends in.
    ttl = backend.command("PTTL", hash_of(limiter))
    assert 600_000 + 20_000 < ttl <= 600_000 + 40_000


def test_a_foreign_state_a_new_field_or_other_numbers_extend_the_hash(clock):
    """A field with no readable state, or one written under another drain,
    gives no promise about the hash's life: the hit extends it."""
    backend = MemoryBackend(clock=clock)
    limiter = limiter_on(backend, clock)
    assert limiter.hit("k").allowed
    key = hash_of(limiter)
    [name] = limiter.state_keys("k")
    state = read_state(backend, name)
    for written in ("garbage", state.replace(":5000000:", ":2500000:")):
        write_state(backend, name, written)
        backend.command("PEXPIRE", key, 1)
        assert limiter.hit("k").allowed
        assert backend.command("PTTL", key) > 20_000
    other = limiter_on(backend, clock, [Limit(9, 60, name="other")])
    backend.command("PEXPIRE", key, 1)
    assert other.hit("k").allowed
    assert backend.command("PTTL", key) > 60_000


def test_a_hit_sends_the_drain_and_a_state_holds_the_words_it_was_sent(clock):
    """The caller sends each limit's drain, rounded up to a whole
    microsecond, and a hit writes the drain and max_requests as sent; a
    state whose numbers are written otherwise (a zero in front) is still
    this bucket, read by value."""
    # Three requests a second: each drains in 333,333.3 µs, rounded up.
    limit = Limit(3, 1)
    args = LeakyBucket().pack_args("hit", 1, None, [limit, LIMIT])
    assert args[3:7] == ["3", "333334", "4", "5000000"]
    backend = MemoryBackend(clock=clock)
    limiter = limiter_on(backend, clock, [limit])
    assert limiter.hit("k").allowed
    [name] = limiter.state_keys("k")
    assert read_state(backend, name) == f"{now_us(clock) + 333_334}:333334:3"
    # Two requests in it: the hit fits, and leaves no room.
    write_state(backend, name, f"{now_us(clock) + 666_668}:0333334:03")
    decision = limiter.hit("k")
    assert decision.allowed
    assert decision.remaining == 0
    assert read_state(backend, name) == f"{now_us(clock) + 1_000_002}:333334:3"


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(
        st.tuples(
            st.integers(0, 40_000_000),  # microseconds since the last call
            st.integers(0, 3),  # which limits the call names
            st.integers(1, 3),  # cost
            st.sampled_from(["hit", "hit", "hit", "peek", "refund"]),
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_the_hash_outlives_every_state_of_its_fields(ops):
    """Whatever the hits, refunds, penalties and changes of limit, after
    every call the hash lives at least until each of its fields' states
    stops mattering."""
    clock = Clock(START_US / 1_000_000 + 0.123457)
    backend = MemoryBackend(clock=clock)
    # Two named limits whose max_requests and duration change between
    # calls (so their drain does), and one with a penalty.
    choices = [
        [Limit(3, 10, name="a"), Limit(5, 30, name="b", penalty=45)],
        [Limit(2, 10, name="a"), Limit(5, 60, name="b", penalty=45)],
        [Limit(3, 10, name="a")],
        [Limit(7, 3, name="a"), Limit(1, 30, name="b")],
    ]
    seen: set[str] = set()
    for step, choice, cost, mode in ops:
        clock.advance(step / 1_000_000)
        limiter = limiter_on(backend, clock, choices[choice])
        if mode == "refund":
            limiter.refund("k", cost)
        else:
            getattr(limiter, mode)("k", cost)
        seen.update(limiter.state_keys("k"))
        key = hash_of(limiter)
        ttl_ms = backend.command("PTTL", key)
        for name in seen:
            state = read_state(backend, name)
            if state is None:
                continue
            left_us = state_end(state) - now_us(clock)
            assert ttl_ms > 0
            assert math.ceil(left_us / 1000) <= ttl_ms, (name, state)


def test_reset_deletes_the_limiters_own_fields_and_the_last_takes_the_hash(clock):
    backend = MemoryBackend(clock=clock)
    short = limiter_on(backend, clock, [Limit(4, 20)])
    long = limiter_on(backend, clock, [Limit(10, 3600)])
    short.hit("k")
    long.hit("k")
    assert hash_of(short) == hash_of(long)
    short.reset("k")
    assert short.peek("k").remaining == 4
    assert long.peek("k").remaining == 9
    long.reset("k")
    assert backend.command("DBSIZE") == 0


@pytest.mark.redis
def test_reset_leaves_a_key_of_another_type_and_a_hit_replaces_it(redis_client):
    limiter = limiter_on(SyncRedis(redis_client), Clock(START_US / 1_000_000))
    key = hash_of(limiter)
    redis_client.rpush(key, "not ours")
    limiter.reset("k")
    assert redis_client.type(key) == b"list"
    decision = limiter.hit("k")
    assert decision.allowed
    assert decision.remaining == 3
    assert redis_client.type(key) == b"hash"
    assert redis_client.pttl(key) > 0
