"""Seed section "Headers": choosing the header providers."""

from django.http import HttpRequest, HttpResponse

from luathrottle.django import AsyncThrottle, Rate, SyncThrottle, ThrottledView
from luathrottle.django.headers import RateLimitIETFDraft, XRateLimit
from seed_project.views import to_response


# Seed: X-RateLimit-* only, no Retry-After.
class NoRetryAfterController(ThrottledView):
    throttling = (AsyncThrottle(1, Rate.minute, response_headers=[XRateLimit()]),)

    async def get(self, request: HttpRequest) -> HttpResponse:
        return to_response("inside")


# Seed: the IETF draft's RateLimit-Policy and RateLimit.
class IETFDraftController(ThrottledView):
    throttling = (
        SyncThrottle(1, Rate.minute, response_headers=[RateLimitIETFDraft()]),
    )

    def get(self, request: HttpRequest) -> HttpResponse:
        return to_response("inside")
