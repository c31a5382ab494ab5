"""``@throttle`` tells a handler in a class body from a function view by
where it is applied, never by the function's name."""

import functools

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse

from luathrottle.backends.memory import MemoryBackend
from luathrottle.django import SyncThrottle, ThrottledView, throttle


def one_a_minute(clock):
    return SyncThrottle(1, 60, backend=MemoryBackend(), clock=clock)


class Handlers:
    """Views kept on a class, as some projects keep them."""

    @staticmethod
    def ping(request):
        return HttpResponse("pong")


def test_a_function_named_like_a_method_is_a_function_view(rf, clock):
    # Its __qualname__ is "Handlers.ping", which reads like a handler's.
    assert Handlers.ping.__qualname__ == "Handlers.ping"
    view = throttle(one_a_minute(clock), allow_unsafe_cache=None)(Handlers.ping)
    assert view(rf.get("/")).status_code == 200
    assert view(rf.get("/")).status_code == 429


def test_a_wrapped_handler_copied_from_a_class_is_a_function_view(rf, clock):
    @functools.wraps(Handlers.ping)
    def wrapper(request):
        return Handlers.ping(request)

    view = throttle(one_a_minute(clock), allow_unsafe_cache=None)(wrapper)
    assert [view(rf.get("/")).status_code for _ in range(2)] == [200, 429]


def test_a_handler_in_a_class_body_waits_for_its_class(rf, clock):
    decorate = throttle(one_a_minute(clock), allow_unsafe_cache=None)

    class View(ThrottledView):
        # Applied by a name, not with @: still in the class body.
        get = decorate(lambda self, request: HttpResponse("inside"))

    view = View.as_view()
    assert [view(rf.get("/")).status_code for _ in range(2)] == [200, 429]


def test_a_view_built_by_a_helper_in_a_class_body_is_a_function_view(rf, clock):
    def build():
        return throttle(one_a_minute(clock), allow_unsafe_cache=None)(
            lambda request: HttpResponse("inside")
        )

    class Urls:
        view = staticmethod(build())

    assert [Urls.view(rf.get("/")).status_code for _ in range(2)] == [200, 429]


def test_a_handler_in_a_plain_class_is_refused(clock):
    # Python 3.11 wraps what __set_name__ raises in a RuntimeError; 3.12 and
    # newer raise it as it is, with a note.
    with pytest.raises((RuntimeError, ImproperlyConfigured)) as info:

        class Plain:
            @throttle(one_a_minute(clock), allow_unsafe_cache=None)
            def get(self, request):
                return HttpResponse()

    error = info.value
    if isinstance(error, RuntimeError):
        error = error.__cause__
    assert isinstance(error, ImproperlyConfigured)
    assert "Plain.get needs the class to derive" in str(error)
