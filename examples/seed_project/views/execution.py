"""Seed section "Throttling execution": an IP-based throttle after auth.

Nobody is logged in, so auth answers 401 and the after-auth throttle never
runs: both requests of the seed's session get the same 401.
"""

from django.http import HttpRequest, HttpResponse

from luathrottle.django import (
    AsyncThrottle,
    Rate,
    SyncThrottle,
    ThrottledView,
    throttle,
)
from luathrottle.django.auth import DjangoSessionAsyncAuth, DjangoSessionSyncAuth
from luathrottle.django.cache_keys import RemoteAddr
from seed_project.views import to_response


class AfterAuthController(ThrottledView):
    @throttle(
        SyncThrottle(
            1,
            Rate.minute,
            cache_key=RemoteAddr(runs_before_auth=False),
        ),
        auth=[DjangoSessionSyncAuth()],
    )
    def get(self, request: HttpRequest) -> HttpResponse:
        return to_response("inside")


# The async twin, which the seed does not show.
class AsyncAfterAuthController(ThrottledView):
    @throttle(
        AsyncThrottle(
            1,
            Rate.minute,
            cache_key=RemoteAddr(runs_before_auth=False),
        ),
        auth=[DjangoSessionAsyncAuth()],
    )
    async def get(self, request: HttpRequest) -> HttpResponse:
        return to_response("inside")
