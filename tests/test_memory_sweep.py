"""MemoryBackend's sweep under churn: identities that are seen once and
never again must not pile up. Its promise (``memory_keyspace.lua``): a key
is swept within a batch once the second it expired in has passed, and when
many keys came due at once the sweep takes two of them for each key calls
name, while calls add at most one. So the keyspace stays under twice its
live keys, pass after pass of new identities, however long the churn goes
on. DBSIZE counts expired keys that were not swept yet."""

from collections.abc import Callable

import pytest

from luathrottle import LeakyBucket, Limiter, SimpleRate
from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.backends.memory import MemoryBackend
from states import limiter_keys, locate

#: An algorithm, its limits, and how long a hit's hash lives at most: a
#: SimpleRate hash as long as its longest window, a LeakyBucket hash until the
#: block of full buckets after the one its request drains in ends (12 s for
#: both limits, then less than two full buckets of the larger, 2 minutes
#: each: lua/leaky_bucket.lua, Expiry). Every limit of an identity is a field
#: of its one hash.
CASES: dict[str, tuple[Callable[[], BaseThrottleAlgorithm], list[str], int]] = {
    "simple-1": (SimpleRate, ["5/minute"], 60),
    "simple-3": (SimpleRate, ["1/second", "3/10s", "5/minute"], 60),
    "leaky-2": (LeakyBucket, ["5/minute", "10/2minute"], 12 + 2 * 120),
}
PASSES = 40
IDENTITIES = 500


def churning(case: str, clock) -> tuple[MemoryBackend, Limiter, int]:
    """A backend, a limiter on it, and how many keys one identity holds."""
    algorithm, limits, _ = CASES[case]
    backend = MemoryBackend(clock=clock)
    limiter = Limiter(limits, algorithm=algorithm(), backend=backend)
    keys = {locate(key)[0] for key in limiter_keys(limiter, "someone")}
    return backend, limiter, len(keys)


@pytest.mark.parametrize("case", sorted(CASES))
def test_passes_of_new_identities_leave_no_pile_of_expired_keys(clock, case):
    """Each pass hits identities never seen before, then the clock moves
    past every TTL: all the keys of the pass before are expired, and nobody
    reads them again."""
    backend, limiter, per_identity = churning(case, clock)
    live = IDENTITIES * per_identity
    sizes = []
    for index in range(PASSES):
        for identity in range(IDENTITIES):
            assert limiter.hit(f"pass-{index}-{identity}").allowed
        sizes.append(backend.command("DBSIZE"))
        clock.advance(CASES[case][2] + 1)
    assert sizes[0] == live
    assert max(sizes) < 2 * live, sizes


@pytest.mark.parametrize("case", sorted(CASES))
def test_continuous_churn_keeps_the_keyspace_near_its_live_keys(clock, case):
    """A new identity at every hit, the clock moving on between hits so that
    the last IDENTITIES of them are alive after each, for PASSES times as
    many hits."""
    backend, limiter, per_identity = churning(case, clock)
    live = IDENTITIES * per_identity
    start, step = clock.now, CASES[case][2] / IDENTITIES
    # When each identity's keys expire, by their PTTL after its hit: a
    # LeakyBucket hash's life depends on where its state ends in a block.
    expiries: list[float] = []
    sizes = []
    for index in range(PASSES * IDENTITIES):
        clock.now = start + index * step
        identity = f"identity-{index}"
        assert limiter.hit(identity).allowed
        for key in {locate(key)[0] for key in limiter_keys(limiter, identity)}:
            expiries.append(clock.now + backend.command("PTTL", key) / 1000)
        if index % IDENTITIES == IDENTITIES - 1:
            size = backend.command("DBSIZE")
            # Every key still alive is there, and few expired ones beside.
            assert sum(expiry > clock.now for expiry in expiries) <= size
            sizes.append(size)
    assert sizes[0] <= live
    assert max(sizes) < 2 * live, sizes
