"""The end-to-end views: one async view body behind 0, 1 or 3 throttles,
on MemoryBackend, AsyncRedis or Django's RedisCache, each with the full
rate-limit headers on every response."""

from collections.abc import Awaitable, Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path

from luathrottle.backends.base import AsyncBackend
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis
from luathrottle.django import AsyncThrottle, Rate, throttle

__all__ = ["VIEWS", "urlpatterns"]

AsyncView = Callable[[HttpRequest], Awaitable[HttpResponse]]
#: Never denied within a run.
MAX_REQUESTS = 1_000_000
RATES = (Rate.second, Rate.minute, Rate.hour)
BACKENDS: dict[str, AsyncBackend | None] = {
    "memory": MemoryBackend(),
    "redis": AsyncRedis.from_url(settings.REDIS_URL),
    "cache": None,  # the default: AsyncDjangoCache on the "default" cache
}


def _view(name: str) -> AsyncView:
    async def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(b'"inside"', content_type="application/json")

    # Throttles scope their counters by the view's name.
    view.__name__ = view.__qualname__ = name
    return view


def _throttled(backend_name: str, size: int) -> AsyncView:
    backend = BACKENDS[backend_name]
    throttles = [
        AsyncThrottle(MAX_REQUESTS, rate, backend=backend) for rate in RATES[-size:]
    ]
    view = _view(f"{backend_name}_{size}")
    return throttle(*throttles, headers_on_every_response=True)(view)


#: Path: view. ``none/`` has no throttle at all.
VIEWS: dict[str, AsyncView] = {
    "health/": _view("health"),
    "none/": _view("none"),
    **{
        f"{name}/{size}/": _throttled(name, size)
        for name in BACKENDS
        for size in (1, 3)
    },
}

# django-stubs types path() for sync views only.
urlpatterns = [path(route, view) for route, view in VIEWS.items()]  # type: ignore[arg-type]
