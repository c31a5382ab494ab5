"""The errors luathrottle raises.

Misuse (a bad argument, a backend that cannot serve a limiter) raises the
built-in ``ValueError`` or ``TypeError`` naming the argument. Everything the
store does wrong is translated, in the backend that talked to it, into one of
the classes below, with the original exception chained.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from luathrottle.decision import Decision

__all__ = [
    "BackendError",
    "CircuitOpenError",
    "LuathrottleError",
    "PoolExhaustedError",
    "RateLimited",
    "ScriptError",
]


class LuathrottleError(Exception):
    """The root of every error luathrottle raises on its own account."""


class RateLimited(LuathrottleError):  # noqa: N818 - a refusal, not an error
    """A limit refused a call of a function that ``Limiter.limit`` guards,
    or the entry of its ``with`` block: nothing ran, and nothing was spent.

    Args:
        decision: the refusal.

    Attributes:
        decision: the refusal: which limits denied, and what is left; its
            ``reason`` is ``Reason.STORE_UNAVAILABLE`` when the store failed
            and the failure policy refused.
        retry_after: seconds until the call would fit, or until the store
            is asked again; None when it can never fit (its cost is more
            than a limit holds). The decision's.
    """

    def __init__(self, decision: "Decision") -> None:
        after = decision.retry_after
        when = "" if after is None else f": retry after {after:g} s"
        super().__init__(f"rate limited ({decision.reason}){when}")
        self.decision = decision
        self.retry_after = decision.retry_after


class BackendError(LuathrottleError):
    """The store could not run a script: connection, timeout or script error.

    Attributes:
        retry_after: seconds until the backend's circuit breaker lets a call
            through again; 0 when it does now, or when there is no breaker.
    """

    retry_after: float = 0.0


class CircuitOpenError(BackendError):
    """The backend's circuit breaker is open: the store was not called.

    Args:
        retry_after: seconds until the breaker lets a trial call through.
    """

    def __init__(self, retry_after: float) -> None:
        super().__init__("circuit breaker open: the store is not called")
        self.retry_after = retry_after


class ScriptError(BackendError):
    """The store answered, but the script failed on this call's keys: a key
    of another type (WRONGTYPE), or an error in the script itself.

    That is the call's problem, not the store's: a circuit breaker does not
    count it, so one bad key never switches limiting off for every other
    identity.
    """


class PoolExhaustedError(BackendError):
    """Every connection the client's pool allows was busy for the whole wait,
    so the store was not called.

    A spike of traffic, not a failing store: a circuit breaker does not count
    it, so a burst of callers never switches limiting off for everyone.
    """
