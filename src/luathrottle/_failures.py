"""The failure policy: what a limiter or throttle decides when its store
fails.

- ``"allow"``: fail open; the hit is admitted, with ``reason`` saying why;
- ``"deny"``: fail closed; the hit is denied (Django answers 503);
- ``"raise"``: the ``BackendError`` reaches the caller.

The circuit breaker is not here: it sits in the backend (``_breaker``), and
callers only see the ``BackendError`` it leaves, which carries how long a
denied client should wait.
"""

import logging
from collections.abc import Sequence
from typing import Literal

from luathrottle.decision import Decision, LimitDecision, Reason
from luathrottle.exceptions import BackendError
from luathrottle.rates import Limit

__all__ = ["OnFailure", "check_on_failure", "failure_decision"]

logger = logging.getLogger("luathrottle")

OnFailure = Literal["allow", "deny", "raise"]
_POLICIES = ("allow", "deny", "raise")


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


def failure_decision(
    on_failure: OnFailure,
    limits: Sequence[Limit],
    error: BackendError,
    where: str,
) -> Decision:
    """Log a failed call, then decide as the failure policy says.

    Args:
        on_failure: the policy; ``"raise"`` re-raises ``error``.
        limits: the limits the call was for.
        error: what the store did; its ``retry_after`` (the breaker's
            cool-off left) tells a denied client how long to wait, at least
            one second.
        where: names the call in the log: a script and a hashed key, or a
            throttle; never a raw identity.

    Raises:
        BackendError: ``error`` itself, when the policy is ``"raise"``.
    """
    logger.warning("luathrottle store failed for %s (%s): %s", where, on_failure, error)
    if on_failure == "raise":
        raise error
    allowed = on_failure == "allow"
    retry_after = None if allowed else max(error.retry_after, 1.0)
    decisions = [
        LimitDecision(limit, allowed, None, None, retry_after, Reason.STORE_UNAVAILABLE)
        for limit in limits
    ]
    return Decision.combine(decisions)
