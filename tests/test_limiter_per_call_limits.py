"""Limiter.hit/peek(..., limits=...): limits chosen per call, one script call."""

import pytest

from luathrottle import AsyncLimiter, LeakyBucket, Limit, Limiter, Reason
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis


def test_per_call_limits_override_the_limiters(sync_backend, clock):
    limiter = Limiter(100, 60, backend=sync_backend, clock=clock)
    assert [limiter.hit("u", limits="2/minute").allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    denied = limiter.peek("u", limits="2/minute")
    assert denied.limit == 2
    assert denied.reason is Reason.LIMIT_EXCEEDED
    # A limit counts by its window, whatever its numbers: the limiter's own
    # limit of that window counts on from those two hits.
    assert limiter.hit("u").remaining == 97
    # A limit of another window has a counter of its own.
    assert limiter.hit("u", limits="5/hour").remaining == 4


@pytest.mark.parametrize(
    "limits",
    ["3/minute", (3, 60), Limit(3, 60, name="plan"), ["3/minute", "10/hour"]],
    ids=["str", "pair", "Limit", "list"],
)
def test_every_form_the_limiter_takes(limits, clock):
    limiter = Limiter(1, 1, backend=MemoryBackend(clock=clock), clock=clock)
    decisions = [limiter.hit("u", limits=limits) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[0].limits[0].limit.max_requests == 3


def test_a_changed_limit_keeps_its_count(clock):
    limiter = Limiter(1, 60, backend=MemoryBackend(clock=clock), clock=clock)
    assert limiter.hit("u", limits="1/minute").allowed
    assert not limiter.hit("u", limits="1/minute").allowed
    assert limiter.hit("u", limits="5/minute").remaining == 3


def test_one_script_call_for_all_per_call_limits(redis_client):
    limiter = Limiter(1, 60, backend=SyncRedis(redis_client))
    limiter.peek("u")  # loads the function library
    redis_client.config_resetstat()
    decision = limiter.hit("u", cost=2, limits=["5/minute", "7/hour", (9, 86400)])
    stats = redis_client.info("commandstats")
    assert [
        (name, int(value["calls"]))
        for name, value in stats.items()
        if name in ("cmdstat_fcall", "cmdstat_evalsha", "cmdstat_eval")
    ] == [("cmdstat_fcall", 1)]
    assert [item.remaining for item in decision.limits] == [3, 5, 7]


async def test_async_limiter_takes_per_call_limits(async_backend, clock):
    limiter = AsyncLimiter(1, 60, backend=async_backend, clock=clock)
    assert (await limiter.hit("u", limits="2/minute")).allowed
    assert (await limiter.hit("u", limits="2/minute")).remaining == 0
    assert not (await limiter.peek("u", limits="2/minute")).allowed
    # The limiter's own 1/60 counts on the same counter, now above it.
    assert (await limiter.peek("u")).remaining == 0


@pytest.mark.parametrize(
    ("limits", "error"),
    [
        (5, TypeError),
        (2.5, TypeError),
        ("5/fortnight", ValueError),
        ((0, 60), ValueError),
        ([], ValueError),
        ([object()], TypeError),
        ([5, 60], TypeError),
        (["5/minute", "5/minute"], ValueError),
        (["5/minute", "10/minute"], ValueError),
        (["1/second"] * 65, ValueError),
    ],
)
def test_bad_per_call_limits_are_named(limits, error):
    limiter = Limiter(1, 60, backend=MemoryBackend())
    limiter.hit("u", limits=(5, 60))  # a pair remembered does not admit [5, 60]
    with pytest.raises(error, match="limits"):
        limiter.hit("u", limits=limits)


def test_per_call_limits_are_checked_by_the_algorithm():
    limiter = Limiter(1, 60, algorithm=LeakyBucket(), backend=MemoryBackend())
    with pytest.raises(ValueError, match=r"limits: max_requests of limit"):
        limiter.hit("u", limits=(1_000_000, 1))
