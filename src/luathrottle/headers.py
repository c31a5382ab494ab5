"""Response headers from decisions, framework-neutral.

A provider turns the decisions of one request's limits into headers, and
describes those headers for OpenAPI. Times are rounded up to whole seconds:
a client told to wait too little would only be refused again.

Decisions that the store did not make (the failure policy did, and their
``remaining`` is None) tell nothing of the quota, so no quota header speaks
for them: a fail-open response must not tell clients to back off when
nothing was counted. A fail-closed one still says when to retry.
"""

import abc
import math
from collections.abc import Iterable, Sequence
from typing import Any

from luathrottle.decision import LimitDecision, deciding_limit

__all__ = [
    "BaseResponseHeadersProvider",
    "RateLimitIETFDraft",
    "RetryAfter",
    "XRateLimit",
    "collect_headers",
]

HeaderSpec = dict[str, Any]


def _spec(description: str) -> HeaderSpec:
    return {"description": description, "required": True, "schema": {"type": "string"}}


def _seconds(value: float) -> str:
    return str(math.ceil(value))


def _decided(decisions: Sequence[LimitDecision]) -> list[LimitDecision]:
    """The decisions the store made, which alone know the quota."""
    return [item for item in decisions if item.remaining is not None]


class BaseResponseHeadersProvider(abc.ABC):
    """Turns limit decisions into response headers."""

    @abc.abstractmethod
    def provide_headers(self, decisions: Sequence[LimitDecision]) -> dict[str, str]:
        """The headers for one request, given the decision of each limit."""
        raise NotImplementedError(
            f"{type(self).__name__} must define provide_headers()"
        )

    @abc.abstractmethod
    def provide_headers_specs(self) -> dict[str, HeaderSpec]:
        """The OpenAPI header objects of the headers this provider sets."""
        raise NotImplementedError(
            f"{type(self).__name__} must define provide_headers_specs()"
        )

    def __eq__(self, other: object) -> bool:
        return self is other or (
            type(self) is type(other) and vars(self) == vars(other)
        )

    def __hash__(self) -> int:
        return hash(type(self))


class XRateLimit(BaseResponseHeadersProvider):
    """``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset``, for the limit
    that matters most: the denying one, else the one with least left."""

    def provide_headers(self, decisions: Sequence[LimitDecision]) -> dict[str, str]:
        """The three headers, or none when the store made no decision."""
        decided = _decided(decisions)
        if not decided:
            return {}
        main = deciding_limit(decided)
        return {
            "X-RateLimit-Limit": str(main.limit.max_requests),
            "X-RateLimit-Remaining": str(main.remaining),
            "X-RateLimit-Reset": _seconds(main.reset_after or 0.0),
        }

    def provide_headers_specs(self) -> dict[str, HeaderSpec]:
        """Specs of the three headers."""
        return {
            "X-RateLimit-Limit": _spec(
                "The maximum number of requests permitted in the current time window"
            ),
            "X-RateLimit-Remaining": _spec(
                "The number of requests remaining in the current time window"
            ),
            "X-RateLimit-Reset": _spec(
                "The number of seconds until the current rate limit window resets"
            ),
        }


class RetryAfter(BaseResponseHeadersProvider):
    """``Retry-After`` (RFC 9110), in seconds, when a limit denies."""

    def provide_headers(self, decisions: Sequence[LimitDecision]) -> dict[str, str]:
        """``Retry-After`` when denied and a wait can help; else nothing."""
        if not decisions:
            return {}
        main = deciding_limit(decisions)
        if main.retry_after is None:
            return {}
        return {"Retry-After": _seconds(main.retry_after)}

    def provide_headers_specs(self) -> dict[str, HeaderSpec]:
        """Spec of ``Retry-After``."""
        return {
            "Retry-After": _spec(
                "Indicates how long the user agent should wait before making "
                "a follow-up request"
            )
        }


def _quoted(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class RateLimitIETFDraft(BaseResponseHeadersProvider):
    """``RateLimit-Policy`` and ``RateLimit`` from the IETF httpapi draft,
    listing every limit of the request, joined by ", ".

    By default the policy reads ``1;w=60;name="RemoteAddr"``, as the seed
    prints it; with ``current_draft=True`` it reads ``"RemoteAddr";q=1;w=60``
    as in the current draft. ``RateLimit`` reads ``"RemoteAddr";r=0;t=59``
    either way.

    Args:
        current_draft: use the current draft's policy form.
    """

    def __init__(self, *, current_draft: bool = False) -> None:
        if not isinstance(current_draft, bool):
            raise TypeError(f"current_draft must be a bool, got {current_draft!r}")
        self.current_draft = current_draft

    def _policy(self, decision: LimitDecision) -> str:
        limit = decision.limit
        if self.current_draft:
            return f"{_quoted(limit.name)};q={limit.max_requests};w={limit.duration}"
        return f"{limit.max_requests};w={limit.duration};name={_quoted(limit.name)}"

    def provide_headers(self, decisions: Sequence[LimitDecision]) -> dict[str, str]:
        """Both headers over every decision the store made, or none."""
        decided = _decided(decisions)
        if not decided:
            return {}
        states = (
            f"{_quoted(item.limit.name)};r={item.remaining};"
            f"t={_seconds(item.reset_after or 0.0)}"
            for item in decided
        )
        return {
            "RateLimit-Policy": ", ".join(self._policy(item) for item in decided),
            "RateLimit": ", ".join(states),
        }

    def provide_headers_specs(self) -> dict[str, HeaderSpec]:
        """Specs of both headers."""
        return {
            "RateLimit": _spec("Current rate limiting state"),
            "RateLimit-Policy": _spec(
                "Description of all rate limiting policies for this endpoint"
            ),
        }


def collect_headers(
    providers: Iterable[BaseResponseHeadersProvider],
    decisions: Sequence[LimitDecision],
) -> dict[str, str]:
    """Every provider's headers for ``decisions``, merged in order."""
    headers: dict[str, str] = {}
    for provider in providers:
        headers.update(provider.provide_headers(decisions))
    return headers
