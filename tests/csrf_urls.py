"""A URLconf of POST endpoints, CSRF-exempt or not (``test_csrf``)."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt

from luathrottle.backends.memory import MemoryBackend
from luathrottle.django import Rate, SyncThrottle, ThrottledView, throttle

# One store per view, so that each view's counts are its own.
EXEMPT_STORE, FUNCTION_STORE, CHECKED_STORE = (MemoryBackend() for _ in range(3))


@method_decorator(csrf_exempt, name="dispatch")
class ExemptLogin(ThrottledView):
    throttling = (SyncThrottle(2, Rate.minute, backend=EXEMPT_STORE),)
    throttling_allow_unsafe_cache = None

    def post(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse("logged in", safe=False)


@csrf_exempt
@throttle(SyncThrottle(2, Rate.minute, backend=FUNCTION_STORE), allow_unsafe_cache=None)
def exempt_function(request: HttpRequest) -> HttpResponse:
    return JsonResponse("logged in", safe=False)


class CheckedLogin(ThrottledView):
    throttling = (SyncThrottle(2, Rate.minute, backend=CHECKED_STORE),)
    throttling_allow_unsafe_cache = None

    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse("form", safe=False)

    def post(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse("logged in", safe=False)


urlpatterns = [
    path("exempt/", ExemptLogin.as_view()),
    path("exempt-function/", exempt_function),
    path("checked/", CheckedLogin.as_view()),
]
