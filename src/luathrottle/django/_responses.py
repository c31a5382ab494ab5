"""The responses a throttled view answers with itself, and the signals
its throttles send."""

from collections.abc import Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse

from luathrottle._bodies import TOO_MANY_REQUESTS_BODY, UNAVAILABLE_BODY
from luathrottle.django._outcomes import ThrottleOutcome, headers_for, record_outcomes
from luathrottle.django.signals import request_throttled, store_failed

__all__ = [
    "NOT_AUTHENTICATED_BODY",
    "TOO_MANY_REQUESTS_BODY",
    "UNAVAILABLE_BODY",
    "denied",
    "not_authenticated",
]

NOT_AUTHENTICATED_BODY = b'{"detail":[{"msg":"Not authenticated","type":"security"}]}'


def _json(body: bytes, status: int, headers: dict[str, str]) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type="application/json")
    for name, value in headers.items():
        response[name] = value
    return response


def denied(
    request: HttpRequest, outcomes: Sequence[ThrottleOutcome]
) -> HttpResponse | None:
    record_outcomes(request, outcomes)
    notable = [
        item for item in outcomes if item.error is not None or not item.decision.allowed
    ]
    if not notable:
        return None
    _announce(request, notable)
    denied = [item for item in notable if not item.decision.allowed]
    if not denied:
        return None
    if any(item.error is not None for item in denied):
        return _json(UNAVAILABLE_BODY, 503, headers_for(denied))
    return _json(TOO_MANY_REQUESTS_BODY, 429, headers_for(denied))


def _announce(request: HttpRequest, notable: Sequence[ThrottleOutcome]) -> None:
    """Send a signal for each denial and each failure the policy decided."""
    for item in notable:
        arguments: dict[str, Any] = {
            "request": request,
            "throttle": item.throttle,
            "key_name": item.throttle.cache_key.name,
            "state_key": item.key,
            "decision": item.decision,
        }
        if item.error is None:
            request_throttled.send(type(item.throttle), **arguments)
        else:
            on_failure = "allow" if item.decision.allowed else "deny"
            store_failed.send(
                type(item.throttle),
                error=item.error,
                on_failure=on_failure,
                **arguments,
            )


def not_authenticated() -> HttpResponse:
    return _json(NOT_AUTHENTICATED_BODY, 401, {})
