"""``CountWhenMiddleware``: where the ``count_when`` of dmr throttles is
settled.

A dmr throttle runs inside the endpoint, before the response exists, and
dmr calls nothing of it afterwards; so the request carries a ``Pending``
that the throttles fill and this middleware settles once Django has the
response (``luathrottle._counting``).
"""

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import (
    async_to_sync,
    iscoroutinefunction,
    markcoroutinefunction,
    sync_to_async,
)
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from luathrottle._counting import Pending, arefund_unless, refund_unless

__all__ = ["CountWhenMiddleware", "pending_of"]

#: Where the middleware puts the request's ``Pending``.
_PENDING_ATTRIBUTE = "_luathrottle_pending"
_PATH = "luathrottle.dmr.CountWhenMiddleware"


def pending_of(request: Any, needed: bool) -> Pending | None:
    """The request's ``Pending``, or None when no middleware put one.

    Raises:
        ImproperlyConfigured: ``needed`` (a throttle of the request has a
            ``count_when``) and ``MIDDLEWARE`` lacks the middleware, which
            alone sees the response.
    """
    pending: Pending | None = getattr(request, _PENDING_ATTRIBUTE, None)
    if pending is None and needed:
        raise ImproperlyConfigured(
            f"throttles with a count_when need {_PATH!r} in MIDDLEWARE to "
            "refund them once the response is made"
        )
    return pending


_Sync = Callable[[HttpRequest], HttpResponseBase]
_Async = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


class CountWhenMiddleware:
    """Refunds what dmr throttles with a ``count_when`` spent on a request
    whose response does not count: add ``"luathrottle.dmr.CountWhenMiddleware"``
    to ``MIDDLEWARE``. Sync and async.

    ``count_when`` is given the response as Django has it at this
    middleware, whatever made it: the endpoint, dmr's own errors (a 401 of
    its auth, a 422 of its validation), an error page. A request a throttle
    refused is not refunded.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: _Sync | _Async) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(
        self, request: HttpRequest
    ) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        """Pass the request on, and settle its throttles on the response."""
        if self.is_async:
            return self._acall(request)
        pending = Pending()
        setattr(request, _PENDING_ATTRIBUTE, pending)
        response: HttpResponseBase = self.get_response(request)  # type: ignore[assignment]
        for count_when, hits, is_async in pending.due():
            if is_async:
                async_to_sync(arefund_unless)(count_when, response, hits)
            else:
                refund_unless(count_when, response, hits)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        pending = Pending()
        setattr(request, _PENDING_ATTRIBUTE, pending)
        response: HttpResponseBase = await self.get_response(request)  # type: ignore[misc]
        for count_when, hits, is_async in pending.due():
            if is_async:
                await arefund_unless(count_when, response, hits)
            else:
                await sync_to_async(refund_unless)(count_when, response, hits)
        return response
