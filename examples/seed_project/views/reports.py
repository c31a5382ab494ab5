"""Seed section "Throttling reports": rate-limit headers on every response.

These views set ``throttling = None``, which turns the settings-level
throttle off for them: a report lists every throttle the request went
through, and the seed's reports list only the view's own two.
"""

import json
from typing import Final

from django.http import HttpRequest, HttpResponse

from luathrottle.django import (
    AsyncThrottle,
    Rate,
    SyncThrottle,
    ThrottledView,
    ThrottlingReport,
    throttle,
)
from luathrottle.django.cache_keys import RemoteAddr
from luathrottle.django.headers import RateLimitIETFDraft
from seed_project.views import to_response

_draft_headers: Final = RateLimitIETFDraft()


# Seed: AsyncController whose handler adds ThrottlingReport(...).areport().
class ReportController(ThrottledView):
    throttling = None

    @throttle(
        AsyncThrottle(
            1,
            Rate.second,
            response_headers=[_draft_headers],
            cache_key=RemoteAddr(name="per-second"),
        ),
        AsyncThrottle(
            5,
            Rate.minute,
            response_headers=[_draft_headers],
            cache_key=RemoteAddr(name="per-minute"),
        ),
    )
    async def get(self, request: HttpRequest) -> HttpResponse:
        return to_response(
            "inside",
            headers=await ThrottlingReport(request).areport(),
        )


def _parse_number(request: HttpRequest) -> int | HttpResponse:
    """``?number=`` as an int, or the 400 the seed's query model answers."""
    raw = request.GET.get("number")
    if raw is None:
        return _invalid("Field required", "missing")
    try:
        return int(raw)
    except ValueError:
        return _invalid(
            "Input should be a valid integer, unable to parse string as an integer",
            "value_error",
        )


def _invalid(msg: str, kind: str) -> HttpResponse:
    detail = [{"msg": msg, "loc": ["parsed_query", "number"], "type": kind}]
    body = json.dumps({"detail": detail}, separators=(",", ":"))
    return HttpResponse(body, status=400, content_type="application/json")


# Seed: SyncController that overrides to_response() to add the report to
# every response, errors included. Here the view's switch does that.
class ErrorResponseController(ThrottledView):
    throttling = None
    throttling_headers_on_every_response = True

    @throttle(
        SyncThrottle(
            2,
            Rate.second,
            response_headers=[_draft_headers],
            cache_key=RemoteAddr(name="per-second"),
        ),
        SyncThrottle(
            5,
            Rate.minute,
            response_headers=[_draft_headers],
            cache_key=RemoteAddr(name="per-minute"),
        ),
    )
    def get(self, request: HttpRequest) -> HttpResponse:
        parsed = _parse_number(request)
        if isinstance(parsed, HttpResponse):
            return parsed
        return to_response("inside")


# The async twin, which the seed does not show.
class AsyncErrorResponseController(ThrottledView):
    throttling = None
    throttling_headers_on_every_response = True

    @throttle(
        AsyncThrottle(
            2,
            Rate.second,
            response_headers=[_draft_headers],
            cache_key=RemoteAddr(name="per-second"),
        ),
        AsyncThrottle(
            5,
            Rate.minute,
            response_headers=[_draft_headers],
            cache_key=RemoteAddr(name="per-minute"),
        ),
    )
    async def get(self, request: HttpRequest) -> HttpResponse:
        parsed = _parse_number(request)
        if isinstance(parsed, HttpResponse):
            return parsed
        return to_response("inside")
