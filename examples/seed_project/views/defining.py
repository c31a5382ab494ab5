"""Seed section "Defining throttling": method, class and settings levels,
and levels joined."""

from django.http import HttpRequest, HttpResponse

from luathrottle.django import (
    AsyncThrottle,
    Rate,
    SyncThrottle,
    ThrottledView,
    throttle,
)
from seed_project.views import to_response


# Seed: SyncController with @modify(throttling=[SyncThrottle(1, Rate.minute)]).
class MethodLevelController(ThrottledView):
    @throttle(SyncThrottle(1, Rate.minute))
    def get(self, request: HttpRequest) -> HttpResponse:
        return to_response("inside")


# Seed: AsyncController with throttling = (AsyncThrottle(1, Rate.minute),).
class ClassLevelController(ThrottledView):
    throttling = (AsyncThrottle(1, Rate.minute),)

    async def get(self, request: HttpRequest) -> HttpResponse:
        return to_response("inside")


# Seed: DMR_SETTINGS = {Settings.throttling: [SyncThrottle(5, Rate.minute)]},
# here LUATHROTTLE = {"throttling": [...]} in settings.py. These views have
# no throttles of their own: the settings' throttle alone guards them, and
# its headers are on every response.
class SettingsLevelController(ThrottledView):
    throttling_headers_on_every_response = True

    def get(self, request: HttpRequest) -> HttpResponse:
        return to_response("inside")


class AsyncSettingsLevelController(ThrottledView):
    throttling_headers_on_every_response = True

    async def get(self, request: HttpRequest) -> HttpResponse:
        return to_response("inside")


# Seed: class-level 5 per hour joined with method-level 1 per minute.
class JoinedLevelsController(ThrottledView):
    throttling = (SyncThrottle(5, Rate.hour),)

    @throttle(SyncThrottle(1, Rate.minute))
    def get(self, request: HttpRequest) -> HttpResponse:
        return to_response("inside")
