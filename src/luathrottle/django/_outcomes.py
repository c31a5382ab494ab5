"""What a stage of throttles produces: calls, outcomes, and their headers,
kept on the request for ``ThrottlingReport``."""

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from luathrottle.decision import LimitDecision
from luathrottle.exceptions import BackendError
from luathrottle.headers import BaseResponseHeadersProvider
from luathrottle.rates import Limit

if TYPE_CHECKING:
    from luathrottle.django.throttles import BaseThrottle

__all__ = [
    "ThrottleCall",
    "ThrottleOutcome",
    "ThrottlingReport",
    "forget_outcomes",
    "headers_for",
    "record_outcomes",
    "recorded_outcomes",
]

_OUTCOMES_ATTRIBUTE = "_luathrottle_outcomes"


class ThrottleCall(NamedTuple):
    """One throttle's part of a stage: the state key it counts on.

    Attributes:
        throttle: the throttle.
        key: the state key of this request's identity within the scope.
        limit: the limit this request counts under: the throttle's, or what
            its rate callable returned for the request.
    """

    throttle: "BaseThrottle[Any]"
    key: str
    limit: Limit


class ThrottleOutcome(NamedTuple):
    """How one throttle judged one request.

    Attributes:
        throttle: the throttle.
        decision: its limit's decision; when another throttle of the same
            script call denied, nothing was counted.
        key: the state key counted on: hashed, never the raw identity.
        error: what the store did, when the failure policy decided instead.
    """

    throttle: "BaseThrottle[Any]"
    decision: LimitDecision
    key: str
    error: BackendError | None = None


def headers_for(outcomes: Iterable[ThrottleOutcome]) -> dict[str, str]:
    """The headers of ``outcomes``: each provider over its throttles' decisions.

    Equal providers of several throttles make one set of headers, so
    ``RateLimitIETFDraft`` lists every throttle that uses it.
    """
    # Providers compare by value, so equal ones of several throttles meet
    # in one entry; dicts keep the order they were first seen in.
    groups: dict[BaseResponseHeadersProvider, list[LimitDecision]] = {}
    for outcome in outcomes:
        for provider in outcome.throttle.response_headers:
            groups.setdefault(provider, []).append(outcome.decision)
    headers: dict[str, str] = {}
    for provider, decisions in groups.items():
        headers.update(provider.provide_headers(decisions))
    return headers


def record_outcomes(request: Any, outcomes: Iterable[ThrottleOutcome]) -> None:
    """Keep ``outcomes`` on ``request``, for ``ThrottlingReport``."""
    recorded: list[ThrottleOutcome] | None = getattr(request, _OUTCOMES_ATTRIBUTE, None)
    if recorded is None:
        setattr(request, _OUTCOMES_ATTRIBUTE, list(outcomes))
    else:
        recorded.extend(outcomes)


def forget_outcomes(request: Any) -> None:
    """Start ``request`` over, before its throttles run."""
    setattr(request, _OUTCOMES_ATTRIBUTE, [])


def recorded_outcomes(request: Any) -> tuple[ThrottleOutcome, ...]:
    """What the throttles of ``request`` decided so far."""
    return tuple(getattr(request, _OUTCOMES_ATTRIBUTE, ()))


class ThrottlingReport:
    """The rate-limit headers of every throttle the request went through.

    Reads what the request's throttles already decided, so it asks no cache
    anything. Throttles that a cache key skipped, or that a stage never
    reached, are not in it.

    Args:
        request: the request being served.
    """

    def __init__(self, request: Any) -> None:
        self.outcomes: tuple[ThrottleOutcome, ...] = recorded_outcomes(request)

    def report(self) -> dict[str, str]:
        """The headers, for sync views."""
        return headers_for(self.outcomes)

    async def areport(self) -> dict[str, str]:
        """The headers, for async views."""
        return headers_for(self.outcomes)
