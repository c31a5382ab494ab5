"""When the store fails: the failure policy and the circuit breaker.

A limiter or throttle chooses what a failing store means:

- ``"allow"``: fail open; the hit is admitted, with ``reason`` saying why;
- ``"deny"``: fail closed; the hit is denied (Django answers 503);
- ``"raise"``: the ``BackendError`` reaches the caller.

Each backend that talks to a server carries a ``CircuitBreaker``. After
``failures`` failures in a row it opens, and for ``cool_off`` seconds calls
fail at once, without touching the store, so a dead Redis costs microseconds
per request instead of a socket timeout each. Then one trial call goes
through: if it succeeds the breaker closes, otherwise it opens again.

Every store error and every change of a breaker is logged on the
``luathrottle`` logger, with hashed keys only, never raw identities.
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal

from luathrottle.decision import Decision, LimitDecision
from luathrottle.exceptions import BackendError
from luathrottle.rates import Limit

__all__ = [
    "STORE_UNAVAILABLE",
    "CircuitBreaker",
    "CircuitOpenError",
    "OnFailure",
    "breaker_option",
    "check_on_failure",
    "fallback_decision",
    "guarded_failure",
]

logger = logging.getLogger("luathrottle")

OnFailure = Literal["allow", "deny", "raise"]
_POLICIES = ("allow", "deny", "raise")

#: ``Decision.reason`` when the failure policy decided without the store.
STORE_UNAVAILABLE = "store_unavailable"


class CircuitOpenError(BackendError):
    """The breaker is open: the store was not called."""


def check_on_failure(on_failure: object) -> OnFailure:
    """Validate a failure policy.

    Raises:
        ValueError: naming ``on_failure`` when it is not allow, deny or raise.
    """
    if on_failure not in _POLICIES:
        raise ValueError(
            f"on_failure must be 'allow', 'deny' or 'raise', got {on_failure!r}"
        )
    return on_failure  # type: ignore[return-value]


class CircuitBreaker:
    """Stops calling a store that keeps failing, for a cool-off.

    Thread-safe, and never awaits, so one breaker serves threads and asyncio
    tasks alike.

    Args:
        failures: failures in a row that open the breaker, at least 1.
        cool_off: seconds the breaker stays open before one trial call.
        clock: returns seconds; ``time.monotonic`` by default.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    def __init__(
        self,
        failures: int = 5,
        cool_off: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int):
            raise TypeError(f"failures must be an int, got {failures!r}")
        if failures < 1:
            raise ValueError(f"failures must be at least 1, got {failures!r}")
        if isinstance(cool_off, bool) or not isinstance(cool_off, int | float):
            raise TypeError(f"cool_off must be a number of seconds, got {cool_off!r}")
        if not 0 < cool_off <= 3600:
            raise ValueError(
                f"cool_off must be above 0 and at most 3600, got {cool_off!r}"
            )
        self.failures = failures
        self.cool_off = float(cool_off)
        self._clock = clock
        self._lock = threading.Lock()
        self._failed = 0
        self._open_until: float | None = None
        self._trial = False

    @property
    def state(self) -> Literal["closed", "open", "half-open"]:
        """``closed`` (calling), ``open`` (not calling) or ``half-open``
        (one trial call may go through)."""
        with self._lock:
            if self._open_until is None:
                return "closed"
            if self._trial or self._clock() >= self._open_until:
                return "half-open"
            return "open"

    def retry_after(self) -> float:
        """Seconds until the breaker lets a trial call through; 0 if closed."""
        with self._lock:
            if self._open_until is None:
                return 0.0
            return max(self._open_until - self._clock(), 0.0)

    def before_call(self) -> None:
        """Let a call through, or refuse it while the breaker is open.

        Raises:
            CircuitOpenError: the breaker is open, or a trial call is under way.
        """
        with self._lock:
            if self._open_until is None:
                return
            if self._trial or self._clock() < self._open_until:
                raise CircuitOpenError("circuit breaker open: the store is not called")
            self._trial = True
        logger.info("luathrottle circuit breaker half-open: trying the store")

    def succeeded(self) -> None:
        """Record a call that worked: the breaker closes."""
        with self._lock:
            was_open = self._open_until is not None
            self._failed, self._open_until, self._trial = 0, None, False
        if was_open:
            logger.warning("luathrottle circuit breaker closed: the store answers")

    def failed(self) -> None:
        """Record a call that failed: enough in a row open the breaker."""
        with self._lock:
            self._failed += 1
            opens = self._trial or self._failed >= self.failures
            if opens:
                self._open_until = self._clock() + self.cool_off
                self._trial = False
        if opens:
            logger.error(
                "luathrottle circuit breaker open for %.1f s after %d failures",
                self.cool_off,
                self._failed,
            )

    def __repr__(self) -> str:
        return f"CircuitBreaker(failures={self.failures}, cool_off={self.cool_off})"


def breaker_option(breaker: object) -> "CircuitBreaker | None":
    """Read a backend's ``breaker`` argument: None for a new default
    breaker, False for none, or a ``CircuitBreaker``.

    Raises:
        TypeError: naming ``breaker``.
    """
    if breaker is None:
        return CircuitBreaker()
    if breaker is False:
        return None
    if not isinstance(breaker, CircuitBreaker):
        raise TypeError(f"breaker must be a CircuitBreaker or False, got {breaker!r}")
    return breaker


def fallback_decision(
    on_failure: OnFailure,
    limits: Sequence[Limit],
    error: BackendError,
    retry_after: float,
) -> Decision:
    """What the failure policy decides without the store.

    Args:
        on_failure: the policy; ``"raise"`` re-raises ``error``.
        limits: the limits the call was for.
        error: what the store did.
        retry_after: seconds a denied client should wait (the breaker's
            cool-off left), rounded up to at least one second by headers.

    Raises:
        BackendError: ``error`` itself, when the policy is ``"raise"``.
    """
    if on_failure == "raise":
        raise error
    allowed = on_failure == "allow"
    decisions = [
        LimitDecision(
            limit=limit,
            allowed=allowed,
            remaining=None,
            reset_after=None,
            retry_after=None if allowed else max(retry_after, 1.0),
            reason=STORE_UNAVAILABLE,
        )
        for limit in limits
    ]
    return Decision.combine(decisions)


def guarded_failure(
    breaker: CircuitBreaker | None,
    on_failure: OnFailure,
    limits: Sequence[Limit],
    error: BackendError,
    where: str,
) -> Decision:
    """Record and log a failed call, then apply the failure policy.

    Args:
        breaker: the backend's breaker, if it has one.
        on_failure: the policy.
        limits: the limits the call was for.
        error: what the store did.
        where: names the call in the log: a script and a hashed key, or a
            throttle; never a raw identity.

    Raises:
        BackendError: ``error``, when the policy is ``"raise"``.
    """
    if breaker is not None and not isinstance(error, CircuitOpenError):
        breaker.failed()
    logger.warning("luathrottle store failed for %s (%s): %s", where, on_failure, error)
    retry_after = breaker.retry_after() if breaker is not None else 1.0
    return fallback_decision(on_failure, limits, error, retry_after)
