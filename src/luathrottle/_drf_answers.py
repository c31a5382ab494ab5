"""What DRF's responses carry from ``luathrottle.drf``: the 503 of a failed
store, the rate-limit headers, and the refunds of ``count_when`` after the
view; each request keeps its throttles' verdicts in a ``State``."""

from typing import Any

try:
    from rest_framework import views as _drf_views
    from rest_framework.exceptions import APIException, Throttled
except ImportError as exc:  # pragma: no cover - luathrottle.drf says which extra
    raise ImportError(
        "luathrottle.drf needs Django REST framework: pip install 'luathrottle[drf]'"
    ) from exc

from django.http import HttpResponse

from luathrottle._answers import UNAVAILABLE, refusal
from luathrottle._checks import Verdict
from luathrottle._counting import CountWhen, Spent, refund_unless
from luathrottle.django._outcomes import headers_for

__all__ = [
    "STATE_ATTRIBUTE",
    "RateLimitHeadersMixin",
    "State",
    "StoreUnavailable",
    "exception_handler",
    "rate_limit_headers",
]

#: Where the request keeps what its throttles decided.
STATE_ATTRIBUTE = "_luathrottle_drf"


class StoreUnavailable(APIException):  # type: ignore[misc]
    """The 503 of a request whose store failed while the failure policy
    denies; DRF sends ``wait`` as ``Retry-After``."""

    status_code = 503
    default_detail = UNAVAILABLE
    default_code = "ratelimit_unavailable"

    def __init__(self, wait: float | None) -> None:
        super().__init__()
        self.wait = wait


class State:
    """The verdicts of one request's throttles on one view."""

    __slots__ = ("spent", "verdicts", "view")

    def __init__(self, view: object) -> None:
        self.view = view
        self.verdicts: dict[tuple[object, ...], Verdict] = {}
        #: What throttles with a ``count_when`` spent, by throttle class.
        self.spent: list[tuple[CountWhen, list[Spent]]] = []


def rate_limit_headers(request: Any) -> dict[str, str]:
    """The rate-limit headers of the throttles that decided ``request``:
    each throttle class's ``response_headers`` over its decisions. Asks no
    store anything."""
    state: State | None = getattr(request, STATE_ATTRIBUTE, None)
    if state is None:
        return {}
    return headers_for(state.verdicts.values())


def _add_headers(request: Any, response: Any) -> None:
    for name, value in rate_limit_headers(request).items():
        # DRF already set Retry-After from wait(), to the same second.
        if name not in response:
            response[name] = value


class RateLimitHeadersMixin:
    """Put before ``APIView`` (or a ``ViewSet``) to send the rate-limit
    headers on every response, admitted or throttled::

        class Orders(RateLimitHeadersMixin, APIView): ...
    """

    def finalize_response(
        self, request: Any, response: Any, *args: Any, **kwargs: Any
    ) -> Any:
        """DRF's ``finalize_response``, plus the headers."""
        response = super().finalize_response(  # type: ignore[misc]
            request, response, *args, **kwargs
        )
        _add_headers(request, response)
        _refund_uncounted(request, response)
        return response


def _refund_uncounted(request: Any, response: Any) -> None:
    """Refund what throttles with a ``count_when`` spent, when the view ran
    (every throttle admitted) and its response does not count."""
    state: State | None = getattr(request, STATE_ATTRIBUTE, None)
    if state is None or not all(v.decision.allowed for v in state.verdicts.values()):
        return
    for count_when, hits in state.spent:
        refund_unless(count_when, response, hits)


def _problem(request: Any, response: Any) -> Any:
    """The RFC 9457 answer to a request that a throttle class with
    ``problem_json`` refused, with DRF's headers; None when none did."""
    state: State | None = getattr(request, STATE_ATTRIBUTE, None)
    if state is None:
        return None
    denied = [
        verdict
        for signature, verdict in state.verdicts.items()
        if not verdict.decision.allowed and getattr(signature[0], "problem_json", False)
    ]
    answer = refusal(
        [(v.decision, v.check.source.response_headers) for v in denied], True
    )
    if answer is None:
        return None
    problem = HttpResponse(
        answer.body, status=answer.status, content_type=answer.content_type
    )
    for name, value in response.items():
        if name.lower() != "content-type":
            problem[name] = value
    return problem


def exception_handler(exc: Exception, context: dict[str, Any]) -> Any:
    """DRF's exception handler, adding the rate-limit headers to throttled
    responses, and answering with an RFC 9457 problem when a throttle class
    that refused sets ``problem_json``. Set
    ``REST_FRAMEWORK["EXCEPTION_HANDLER"] = "luathrottle.drf.exception_handler"``.
    """
    response = _drf_views.exception_handler(exc, context)
    request = context.get("request")
    refused = isinstance(exc, Throttled | StoreUnavailable)
    if response is not None and refused and request is not None:
        response = _problem(request, response) or response
        _add_headers(request, response)
    return response
