"""What every HTTP door answers: the headers of decisions, and the refusal
of a denied request, as status, headers and body.

Django views, concurrency throttles, DRF, dmr, the ASGI middleware and the
FastAPI dependency all answer from here, so a denial looks the same at
every door: 429 with the chapter's JSON body, or 503 when the store failed
and the failure policy denied, with ``Retry-After`` and the quota headers
of the throttles that denied. Doors that offer ``problem_json`` ask for an
RFC 9457 ``application/problem+json`` body instead.
"""

import json
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from luathrottle.decision import Decision, LimitDecision, Reason
from luathrottle.headers import BaseResponseHeadersProvider, _seconds

__all__ = [
    "JSON",
    "PROBLEM_JSON",
    "QUOTA_EXCEEDED",
    "TOO_MANY_REQUESTS",
    "TOO_MANY_REQUESTS_BODY",
    "UNAVAILABLE",
    "UNAVAILABLE_BODY",
    "Answer",
    "check_problem_json",
    "headers_of",
    "lease_refusal",
    "refusal",
    "refusal_spec",
]

Providers = Sequence[BaseResponseHeadersProvider]

#: The message of a 429: a limit denied the request.
TOO_MANY_REQUESTS = "Too many requests"
#: The message of a 503: the store failed and the failure policy denied.
UNAVAILABLE = "Rate limiting is unavailable"


def _body(message: str) -> bytes:
    # Compact, as the chapter prints it and as Starlette encodes a detail.
    detail = {"detail": [{"msg": message, "type": "ratelimit"}]}
    return json.dumps(detail, separators=(",", ":")).encode()


TOO_MANY_REQUESTS_BODY = _body(TOO_MANY_REQUESTS)
UNAVAILABLE_BODY = _body(UNAVAILABLE)

JSON = "application/json"
#: RFC 9457's media type.
PROBLEM_JSON = "application/problem+json"
#: The problem type of a 429 that draft-ietf-httpapi-ratelimit-headers
#: (-09 to -11, "Quota Exceeded") defines, with its "violated-policies"
#: member. A 503 has no type of the draft's: nothing was exceeded, the store
#: failed; it is RFC 9457's ``about:blank``, titled by its status.
QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"


def _problem(status: int, decisions: Iterable[Decision]) -> bytes:
    if status == 503:
        problem: dict[str, Any] = {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": UNAVAILABLE,
        }
    else:
        violated = [
            item.limit.name
            for decision in decisions
            for item in decision.limits
            if not item.allowed
        ]
        problem = {
            "type": QUOTA_EXCEEDED,
            "title": "Request cannot be satisfied as assigned quota has been exceeded",
            "status": 429,
            "detail": TOO_MANY_REQUESTS,
            "violated-policies": list(dict.fromkeys(violated)),
        }
    return json.dumps(problem, separators=(",", ":")).encode()


class Answer(NamedTuple):
    """A refusal, for a door to send in its framework's own way.

    Attributes:
        status: 429, or 503 when the store failed and the policy denied.
        headers: ``Retry-After`` and the quota headers of what denied.
        body: the JSON body, ``{"detail": [{"msg": ..., "type":
            "ratelimit"}]}``, or the RFC 9457 problem when asked for.
        message: the body's ``msg``, for doors that write their own body.
        content_type: ``application/json``, or ``application/problem+json``
            for a problem.
    """

    status: int
    headers: dict[str, str]
    body: bytes
    message: str
    content_type: str = JSON


def headers_of(
    decided: Iterable[tuple[Providers, Sequence[LimitDecision]]],
) -> dict[str, str]:
    """The headers of decisions, each given with the providers of whatever
    decided it. Equal providers of several throttles make one set of
    headers, so ``RateLimitIETFDraft`` lists every throttle that uses it."""
    # Providers compare by value, so equal ones of several throttles meet in
    # one entry; dicts keep the order they were first seen in.
    groups: dict[BaseResponseHeadersProvider, list[LimitDecision]] = {}
    for providers, decisions in decided:
        for provider in providers:
            groups.setdefault(provider, []).extend(decisions)
    headers: dict[str, str] = {}
    for provider, decisions in groups.items():
        headers.update(provider.provide_headers(decisions))
    return headers


def check_problem_json(problem_json: object) -> bool:
    """``problem_json``, a door's option, checked.

    Raises:
        TypeError: naming ``problem_json``.
    """
    if not isinstance(problem_json, bool):
        raise TypeError(f"problem_json must be True or False, got {problem_json!r}")
    return problem_json


def refusal(
    decided: Iterable[tuple[Decision, Providers]], problem_json: bool = False
) -> Answer | None:
    """The answer to a request that ``decided``, each decision given with
    the providers of its decider; None when every one admits it. With
    ``problem_json`` its body is an RFC 9457 problem: a 429 of the draft's
    ``quota-exceeded`` type, naming the limits that denied in
    ``violated-policies``; a 503 of type ``about:blank``."""
    denied = [
        (decision, providers) for decision, providers in decided if not decision.allowed
    ]
    if not denied:
        return None
    headers = headers_of((providers, decision.limits) for decision, providers in denied)
    unavailable = any(
        decision.reason == Reason.STORE_UNAVAILABLE for decision, _ in denied
    )
    status, body, message = (
        (503, UNAVAILABLE_BODY, UNAVAILABLE)
        if unavailable
        else (429, TOO_MANY_REQUESTS_BODY, TOO_MANY_REQUESTS)
    )
    if problem_json:
        problem = _problem(status, (decision for decision, _ in denied))
        return Answer(status, headers, problem, message, PROBLEM_JSON)
    return Answer(status, headers, body, message)


def lease_refusal(retry_after: float | None, unavailable: bool) -> Answer:
    """The answer to a request a concurrency limit refused: 429 with the
    time until the oldest lease ends, or 503 when the store failed."""
    headers = {}
    if retry_after is not None:
        wait = max(retry_after, 1.0) if unavailable else retry_after
        headers["Retry-After"] = _seconds(wait)
    if unavailable:
        return Answer(503, headers, UNAVAILABLE_BODY, UNAVAILABLE)
    return Answer(429, headers, TOO_MANY_REQUESTS_BODY, TOO_MANY_REQUESTS)


def refusal_spec(providers: Providers) -> dict[str, Any]:
    """The OpenAPI response object of a 429 with ``providers``' headers,
    its schema a reference to ``ErrorModel``."""
    response: dict[str, Any] = {
        "description": "Raised when throttling rate was hit",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorModel"}}
        },
    }
    headers: dict[str, Any] = {}
    for provider in providers:
        headers.update(provider.provide_headers_specs())
    if headers:
        response["headers"] = dict(sorted(headers.items()))
    return response
