"""The options of a concurrency limit, checked when a limiter or a Django
concurrency throttle is built, naming the argument that is wrong."""

import math

from luathrottle.backends.base import StoreTraits
from luathrottle.rates import MAX_DURATION

__all__ = [
    "MAX_IN_FLIGHT",
    "check_lease",
    "check_lease_store",
    "check_max_in_flight",
    "refuse_clock",
]

#: The most leases one key may hold at once.
MAX_IN_FLIGHT = 100_000


def check_max_in_flight(max_in_flight: object) -> int:
    """Validate a concurrency limit.

    Raises:
        TypeError, ValueError: naming ``max_in_flight``.
    """
    if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
        raise TypeError(
            "max_in_flight must be an int, got "
            f"{type(max_in_flight).__name__} {max_in_flight!r}"
        )
    if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
        raise ValueError(
            f"max_in_flight must be between 1 and {MAX_IN_FLIGHT}, "
            f"got {max_in_flight!r}"
        )
    return max_in_flight


def check_lease(lease: object) -> int:
    """Validate a lease length in seconds; return it in whole milliseconds.

    Raises:
        TypeError, ValueError: naming ``lease``.
    """
    if isinstance(lease, bool) or not isinstance(lease, int | float):
        raise TypeError(
            f"lease must be a number of seconds, got {type(lease).__name__} {lease!r}"
        )
    if not math.isfinite(lease) or not 0.001 <= lease <= MAX_DURATION:
        raise ValueError(
            f"lease must be between 0.001 and {MAX_DURATION} seconds, got {lease!r}"
        )
    return round(lease * 1000)


def refuse_clock(clock: object, owner: str) -> None:
    """Refuse a client clock: a lease expires on the store's clock.

    Raises:
        TypeError: naming ``clock`` and what to do instead.
    """
    if clock is not None:
        raise TypeError(
            f"clock is not taken by {owner}: leases expire on the store's clock, "
            "so that processes whose clocks disagree never end each other's "
            "leases; leave clock out, and to move time in tests give the "
            "embedded store the clock: backend=MemoryBackend(clock=...)"
        )


def check_lease_store(traits: StoreTraits, owner: str) -> None:
    """Refuse a store that cannot keep a lease set atomically.

    Raises:
        ValueError: naming ``backend``.
    """
    if not traits.sorted_sets:
        raise ValueError(
            f"backend cannot hold the leases of {owner}: a concurrency limit "
            "needs a store that runs its script atomically with sorted sets "
            "(SyncRedis/AsyncRedis, a Redis-backed Django cache, or "
            "MemoryBackend), and this one runs scripts over a snapshot of "
            "string keys"
        )
