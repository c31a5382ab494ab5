"""TokenBucket and SlidingWindow follow the rule test_hostile_state.py holds
the first two algorithms to: a state someone else wrote counts as absent,
the next admitted hit overwrites it with one whose hash expires, and the
``luathrottle`` logger names the hashed key; nothing raises."""

import logging
import re
import time
import uuid

import pytest

from luathrottle import Limit, Limiter, SlidingWindow, TokenBucket
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from states import limiter_keys, read_state, state_ttl, write_state
from test_hostile_state import GARBAGE, WARNING

LIMIT = Limit(5, 60)
#: Window indexes count from here, in whole durations.
EPOCH_US = 1_700_000_000_000_000


def far_ahead(algorithm: str, now_us: int) -> str:
    """A bucket full, or a window starting, an hour from now."""
    if algorithm == "token":
        return f"{now_us + 3_600_000_000}:12000000:5"
    duration = LIMIT.duration * 1_000_000
    index = (now_us + 3_600_000_000) // duration - EPOCH_US // duration
    return f"{index}:0:0:60"


def beyond_any_limit(algorithm: str, now_us: int) -> str:
    """A window holding a count of 17 digits, more than any limit admits; a
    bucket full 10 minutes from now, though the interval and burst it names
    fill one in 1 minute (plus 5 minutes' margin for clocks). A count merely
    above today's limit is no one else's: it was counted under a higher
    limit (``test_limit_changes.py``)."""
    if algorithm == "token":
        return f"{now_us + 600_000_000}:12000000:5"
    duration = LIMIT.duration * 1_000_000
    return f"{now_us // duration - EPOCH_US // duration}:0:{'1' * 17}:60"


def fixed(value: str):
    return lambda algorithm, now_us: value


CASES = {
    **{name: fixed(value) for name, value in GARBAGE.items()},
    "far-ahead": far_ahead,
    "beyond-any-limit": beyond_any_limit,
}
ALGORITHMS = {"token": TokenBucket, "sliding": SlidingWindow}


@pytest.fixture(params=["memory", "redis"])
def store(request, clock):
    """A backend, and how to write, read and time a state, wherever the
    script keeps it (a key, or a field of the identity's hash)."""
    if request.param == "memory":
        backend = MemoryBackend(clock=clock)
    else:
        backend = SyncRedis(request.getfixturevalue("redis_client"))
    return (
        backend,
        lambda key, value: write_state(backend, key, value),
        lambda key: read_state(backend, key),
        lambda key: state_ttl(backend, key),
    )


#: The longest life a fresh state's key may get: a sliding window's state
#: lives two durations; a token bucket's hash, to the end of the block after
#: the next of its full bucket (lua/token_bucket.lua, "Expiry"), at most
#: three full buckets, of 5 tokens every 12 s.
LONGEST_MS = {"sliding": 2 * LIMIT.duration * 1000, "token": 3 * LIMIT.duration * 1000}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_unreadable_state_counts_as_absent(store, clock, caplog, algorithm, case):
    backend, set_state, get_state, pttl = store
    on_redis = not isinstance(backend, MemoryBackend)
    limiter = Limiter(
        LIMIT,
        algorithm=ALGORITHMS[algorithm](),
        backend=backend,
        prefix=uuid.uuid4().hex[:8],
        clock=None if on_redis else clock,
    )
    [key] = limiter_keys(limiter, "client")
    now_us = time.time_ns() // 1000 if on_redis else round(clock() * 1_000_000)
    set_state(key, CASES[case](algorithm, now_us))
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        decision = limiter.hit("client")
    assert decision.allowed, decision
    assert decision.remaining == LIMIT.max_requests - 1
    warned = [r for r in caplog.records if WARNING in r.getMessage()]
    assert len(warned) == 1
    assert key in warned[0].getMessage()
    state = get_state(key)
    assert state is not None
    assert re.fullmatch(r"[0-9]+(:[0-9]+){2,3}", state), state
    assert 0 < pttl(key) <= LONGEST_MS[algorithm]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        assert limiter.hit("client").remaining == LIMIT.max_requests - 2
    assert not [r for r in caplog.records if WARNING in r.getMessage()]
