"""View classes for the URLconf system check (``test_view_checks``)."""

from django.http import HttpRequest, HttpResponse
from django.views import View
from django.views.generic import TemplateView

from luathrottle.django import Rate, SyncThrottle, ThrottledView


class ForgotThrottledView(View):
    """Meant to be throttled: the base class is the mistake."""

    throttling = (SyncThrottle(1, Rate.minute),)

    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse()


class HeadersOnly(TemplateView):
    throttling_headers_on_every_response = True


class PolicyOnly(View):
    throttling_allow_unsafe_cache = None


class Inherits(ForgotThrottledView):
    """The attribute comes from a base class."""


class Included(View):
    throttling = None


class Exempt(View):
    throttling = ()


class Throttled(ThrottledView):
    throttling = (SyncThrottle(1, Rate.minute),)
    throttling_allow_unsafe_cache = None
    throttling_headers_on_every_response = True

    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse()


class Plain(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse()


def function_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse()
