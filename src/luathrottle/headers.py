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
import functools
import math
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

from http_sf import ItemType, ListType, ser
from http_sf.types import BareItemType

from luathrottle.decision import LimitDecision, deciding_limit
from luathrottle.rates import Limit

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


#: What an sf-String may hold (RFC 9651, 3.3.3): printable ASCII. A limit
#: name beyond it is sent percent-encoded as UTF-8, ``%`` itself included,
#: so that the name stays one readable String rather than failing the
#: response.
_STRING_SAFE = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) != "%")


def _policy_name(name: str) -> str:
    return quote(name, safe=_STRING_SAFE)


def _item(value: BareItemType, params: dict[str, BareItemType]) -> ItemType:
    """An sf-Item with parameters, as ``http_sf`` takes one."""
    return (value, params)


#: The largest sf-Integer (RFC 9651, 3.3.1). A quota or a count beyond it (a
#: limit of 10**15, a TokenBucket's larger burst) is sent as it, which says
#: as much to a client, rather than failing the response.
_MAX_INTEGER = 999_999_999_999_999
#: The policy fields kept, one per tuple of limits: a process has few, and
#: serialising them again for every response cost most of a throttled
#: request's own time.
_KEPT = 1024


def _integer(value: int) -> int:
    return min(value, _MAX_INTEGER)


@functools.lru_cache(maxsize=_KEPT)
def _policies(limits: tuple[Limit, ...], current_draft: bool) -> str:
    """``RateLimit-Policy`` for ``limits``: the same whatever was decided."""
    items: ListType = []
    for limit in limits:
        name, quota = _policy_name(limit.name), _integer(limit.max_requests)
        if current_draft:
            items.append(_item(name, {"q": quota, "w": limit.duration}))
        else:
            items.append(_item(quota, {"w": limit.duration, "name": name}))
    return ser(items)


class RateLimitIETFDraft(BaseResponseHeadersProvider):
    """``RateLimit-Policy`` and ``RateLimit`` from the IETF httpapi draft
    (draft-ietf-httpapi-ratelimit-headers), listing every limit of the
    request. Both are Structured Field Lists (RFC 9651), serialised by the
    ``http_sf`` library.

    By default the policy reads ``1;w=60;name="RemoteAddr"``, as the
    chapter prints it (an Integer quota, the name as a parameter): the
    default of the Django throttles and dmr, kept for fidelity. With
    ``current_draft=True`` it takes the form of drafts -08 to -11, the
    default of the ASGI, FastAPI, Flask and DRF doors: each policy an
    sf-String, its name, with ``q`` (the quota) and ``w`` (the window in
    seconds), ``"RemoteAddr";q=1;w=60``. ``RateLimit`` reads
    ``"RemoteAddr";r=0;t=59`` either way: ``r`` what is left, ``t`` the
    seconds until the window resets.

    A name outside printable ASCII, which an sf-String cannot hold, is sent
    percent-encoded as UTF-8 (``"d%C3%A9bit"``).

    Args:
        current_draft: use the drafts' policy form rather than the chapter's.
    """

    def __init__(self, *, current_draft: bool = False) -> None:
        if not isinstance(current_draft, bool):
            raise TypeError(f"current_draft must be a bool, got {current_draft!r}")
        self.current_draft = current_draft

    def provide_headers(self, decisions: Sequence[LimitDecision]) -> dict[str, str]:
        """Both headers over every decision the store made, or none."""
        decided = _decided(decisions)
        if not decided:
            return {}
        limits = tuple(item.limit for item in decided)
        states: ListType = [
            _item(
                _policy_name(item.limit.name),
                {
                    "r": _integer(item.remaining or 0),
                    "t": math.ceil(item.reset_after or 0.0),
                },
            )
            for item in decided
        ]
        return {
            "RateLimit-Policy": _policies(limits, self.current_draft),
            "RateLimit": ser(states),
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
