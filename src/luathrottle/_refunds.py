"""Refunds and reservations: ``Limiter.refund``, ``Limiter.reserve`` and
their async twins.

A refund is each script's ``"refund"`` mode: it gives cost back to the
window or bucket a hit went to, never above the limit, never making a
window longer, and not at all once that window or bucket has moved on.
Which window is the hit's is an *anchor* per limit: when the hit's reply
said the limit's quota is whole again, its ``now`` plus its
``reset_after``. A plain ``refund(key, cost)`` names no hit, so it gives
back to the current window or bucket; a reservation knows its hit's reply
and sends its anchors.

The hit's ``now`` is the limiter's clock when it has one, exact; on the
store's clock it is this process's clock around the call, which may be
off by the clocks' skew and the round trip. Windows tell apart by half a
duration, so a skew below that names the right window; a bucket gives
back no more of the hit's cost than the anchor says is left of it, so a
skew shifts that by at most itself.

Planning a settle and packing a refund do no I/O (``plan``,
``refund_words``); the twins differ only in ``await``.
"""

import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, cast

from luathrottle._checks import Check
from luathrottle._clock import Clock, microseconds
from luathrottle._lone import adecide_one, decide_one
from luathrottle.backends.memory import MemoryBackend
from luathrottle.decision import Decision
from luathrottle.rates import LimitSpec


class _Checking(Protocol):
    """What refunds and reservations ask of their limiter: the checks of its
    calls, and the clock and store that time them."""

    clock: Clock | None
    backend: Any

    def _check(
        self, key: str, mode: Any, cost: int = ..., limits: Any = ...
    ) -> Check: ...


__all__ = [
    "AsyncRefunds",
    "AsyncReservation",
    "Refunds",
    "Reservation",
    "agive_back",
    "anchors_of",
    "clock_us",
    "give_back",
    "plan",
    "refund_words",
]

#: Anchors that name no hit: the current window or bucket.
_CURRENT = None


def _cost(value: object, name: str, least: int) -> int:
    """Validate an int cost of at least ``least``, naming it.

    Raises:
        TypeError, ValueError: naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < least:
        raise ValueError(f"{name} must be at least {least}, got {value!r}")
    return value


def anchors_of(decision: Decision, now_us: int) -> tuple[str, ...] | None:
    """Each limit's anchor from an admitted hit's ``decision``, decided at
    ``now_us``; None when the store did not decide it (the failure policy
    did, or a shadowed limit shows no quota): then nothing was surely
    counted, and nothing is given back."""
    anchors = []
    for item in decision.limits:
        if item.reset_after is None:
            return None
        anchors.append(str(now_us + round(item.reset_after * 1_000_000)))
    return tuple(anchors)


def refund_words(
    check: Check, cost: int, anchors: Sequence[str] | None
) -> tuple[Sequence[str], Sequence[str]]:
    """The KEYS and ARGV of the refund of ``cost`` to ``check``'s keys:
    its arguments in ``"refund"`` mode, then one anchor per limit ("" for
    the current window or bucket)."""
    clock = check.clock
    now_us = None if clock is None else microseconds(clock)
    args = check.algorithm.pack_args("refund", cost, now_us, check.limits)
    keys, argv = check.script.words(check.keys, args)
    tail = [""] * len(check.limits) if anchors is None else list(anchors)
    return keys, [*argv, *tail]


def give_back(check: Check, cost: int, anchors: Sequence[str] | None) -> Decision:
    """Refund ``cost`` to ``check``'s keys on its sync backend.

    Raises:
        BackendError: the store failed.
    """
    keys, argv = refund_words(check, cost, anchors)
    try:
        reply = check.backend.run_script(check.script, keys, argv)  # type: ignore[union-attr]
    finally:
        # The cache may hold a denial the refund undid.
        if check.denials is not None:
            check.denials.forget(check.keys)
    return Decision.from_reply(check.limits, reply, check.keys)


async def agive_back(
    check: Check, cost: int, anchors: Sequence[str] | None
) -> Decision:
    """``give_back`` on an async backend."""
    keys, argv = refund_words(check, cost, anchors)
    try:
        reply = await check.backend.arun_script(check.script, keys, argv)  # type: ignore[union-attr]
    finally:
        if check.denials is not None:
            check.denials.forget(check.keys)
    return Decision.from_reply(check.limits, reply, check.keys)


def clock_us(clock: Clock | None, backend: object = None) -> int:
    """Now on ``clock``, else on the store's clock when this process keeps
    it (the embedded store), else on this process's, in microseconds: what
    a hit on ``clock`` was decided at, to anchor its refund."""
    if clock is not None:
        return microseconds(clock)
    if isinstance(backend, MemoryBackend):
        return backend._now_us()
    return time.time_ns() // 1000


def plan(estimate: int, actual: object) -> tuple[str, int] | None:
    """What settling a reservation of ``estimate`` at ``actual`` sends:
    ``("refund", n)``, ``("hit", n)``, or None when they agree.

    Raises:
        TypeError, ValueError: naming ``actual``.
    """
    spent = _cost(actual, "actual", 0)
    if spent < estimate:
        return "refund", estimate - spent
    if spent > estimate:
        return "hit", spent - estimate
    return None


class _Pending:
    """What both reservations share: the hit, its anchors, and whether it
    was settled."""

    __slots__ = (
        "_anchors",
        "_check",
        "_key",
        "_limiter",
        "_settled",
        "decision",
        "estimate",
    )

    def __init__(
        self,
        limiter: _Checking,
        key: str,
        check: Check,
        decision: Decision,
        anchors: tuple[str, ...] | None,
    ) -> None:
        self._limiter = limiter
        self._key = key
        self._check = check
        self._anchors = anchors
        self._settled = False
        #: The reservation's hit, as ``hit`` returns it.
        self.decision = decision
        #: The cost reserved.
        self.estimate = check.cost

    @property
    def allowed(self) -> bool:
        """Whether the estimate was admitted (and so reserved)."""
        return self.decision.allowed

    def _plan(self, actual: object) -> tuple[str, int] | None:
        """``plan`` for this reservation, marking it settled.

        Raises:
            RuntimeError: it was settled already, or denied.
        """
        if not self.decision.allowed:
            raise RuntimeError("a denied reservation reserved nothing to settle")
        if self._settled:
            raise RuntimeError("this reservation was settled already")
        planned = plan(self.estimate, actual)
        self._settled = True
        return planned

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(estimate={self.estimate}, "
            f"allowed={self.allowed}, settled={self._settled})"
        )


class Reservation(_Pending):
    """A cost spent ahead, for a call whose real cost is known afterwards
    (``Limiter.reserve``)."""

    def settle(self, actual: int) -> Decision:
        """Count ``actual`` instead of the estimate: a smaller cost gives
        the difference back (a refund, nothing once the window or bucket
        moved on); a larger one spends the difference as a hit, which is
        denied, spending nothing more, when it does not fit, and the
        returned decision says so.

        Args:
            actual: what the call really cost, at least 0.

        Returns:
            The refund's decision (as a peek after it), the extra hit's, or
            the reservation's own when ``actual`` is the estimate, or when
            the store did not decide the reservation (the failure policy
            did, or it is in shadow mode): then nothing is given back.

        Raises:
            RuntimeError: settled twice, or the reservation was denied.
            TypeError, ValueError: a bad ``actual``, named.
            BackendError: the store failed; a refund raises whatever
                ``on_failure`` says, an extra hit as ``hit`` does.
        """
        planned = self._plan(actual)
        limiter = self._limiter
        if planned is None:
            return self.decision
        kind, cost = planned
        check = self._check
        if kind == "refund" and self._anchors is None:
            return self.decision
        if kind == "hit":
            return decide_one(
                limiter._check(self._key, "hit", cost, list(check.limits))
            )
        return give_back(check, cost, self._anchors)


class AsyncReservation(_Pending):
    """``Reservation`` for ``AsyncLimiter``: ``settle`` is awaited."""

    async def settle(self, actual: int) -> Decision:
        """Count ``actual`` instead of the estimate, as
        ``Reservation.settle``."""
        planned = self._plan(actual)
        limiter = self._limiter
        if planned is None:
            return self.decision
        kind, cost = planned
        check = self._check
        if kind == "refund" and self._anchors is None:
            return self.decision
        if kind == "hit":
            recheck = limiter._check(self._key, "hit", cost, list(check.limits))
            return await adecide_one(recheck)
        return await agive_back(check, cost, self._anchors)


class Refunds:
    """``Limiter``'s refunds and reservations."""

    def refund(
        self,
        key: str,
        cost: int = 1,
        limits: LimitSpec | Iterable[LimitSpec] | None = None,
    ) -> Decision:
        """Give ``cost`` back to ``key``'s current windows or buckets.

        A refund never leaves more than the limit, never makes a window
        longer, and gives nothing to a window that has ended; a bucket gets
        back ``cost`` tokens' worth of time, no more than makes it full. To
        give back exactly one hit's cost, and nothing if its window moved
        on, ``reserve`` it and ``settle``.

        Args:
            key: who is counted.
            cost: units to give back, at least 1.
            limits: the limits the hit was under, as for ``hit``.

        Returns:
            What a peek of cost 1 says after the refund.

        Raises:
            TypeError, ValueError: a bad argument, named.
            BackendError: the store failed, whatever ``on_failure`` says.
        """
        limiter = cast(_Checking, self)
        check = limiter._check(key, "peek", _cost(cost, "cost", 1), limits)
        return give_back(check, cost, _CURRENT)

    def reserve(
        self,
        key: str,
        estimate: int,
        limits: LimitSpec | Iterable[LimitSpec] | None = None,
    ) -> Reservation:
        """Spend ``estimate`` now, for a call whose cost is known only
        afterwards; ``settle`` the reservation with the real cost.

        Args:
            key: who is counted.
            estimate: the cost to hold, at least 1.
            limits: as for ``hit``.

        Returns:
            The reservation; when ``allowed`` is False it holds nothing,
            as a denied ``hit`` spends nothing, and cannot be settled.

        Raises:
            TypeError, ValueError: a bad argument, named.
            BackendError: the store failed and ``on_failure`` is ``"raise"``.
        """
        limiter = cast(_Checking, self)
        check = limiter._check(key, "hit", _cost(estimate, "estimate", 1), limits)
        before = clock_us(limiter.clock, limiter.backend)
        decision = decide_one(check)
        now_us = (before + clock_us(limiter.clock, limiter.backend)) // 2
        return Reservation(limiter, key, check, decision, anchors_of(decision, now_us))


class AsyncRefunds:
    """``AsyncLimiter``'s refunds and reservations."""

    async def refund(
        self,
        key: str,
        cost: int = 1,
        limits: LimitSpec | Iterable[LimitSpec] | None = None,
    ) -> Decision:
        """Give ``cost`` back to ``key``'s current windows or buckets, as
        ``Limiter.refund``."""
        limiter = cast(_Checking, self)
        check = limiter._check(key, "peek", _cost(cost, "cost", 1), limits)
        return await agive_back(check, cost, _CURRENT)

    async def reserve(
        self,
        key: str,
        estimate: int,
        limits: LimitSpec | Iterable[LimitSpec] | None = None,
    ) -> AsyncReservation:
        """Spend ``estimate`` now, as ``Limiter.reserve``; the reservation's
        ``settle`` is awaited."""
        limiter = cast(_Checking, self)
        check = limiter._check(key, "hit", _cost(estimate, "estimate", 1), limits)
        before = clock_us(limiter.clock, limiter.backend)
        decision = await adecide_one(check)
        now_us = (before + clock_us(limiter.clock, limiter.backend)) // 2
        return AsyncReservation(
            limiter, key, check, decision, anchors_of(decision, now_us)
        )
