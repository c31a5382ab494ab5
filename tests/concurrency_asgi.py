"""The Django app ``tests/test_django_concurrency_served.py`` serves with
uvicorn: async views that hold a ConcurrencyThrottle's slot until the test
lets them go, through Redis lists (``entered``, ``gate``); and one whose
second slot lives on a store whose replies the test can make late."""

import os

import django
import redis.asyncio
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="luathrottle-tests",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    LUATHROTTLE={},
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import HttpResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from luathrottle.backends.redis import AsyncRedis  # noqa: E402
from luathrottle.django import AsyncConcurrencyThrottle, throttle  # noqa: E402

URL = os.environ["LUATHROTTLE_REDIS_URL"]
#: A store behind a proxy that can hold replies back.
LATE_URL = os.environ["LUATHROTTLE_LATE_REDIS_URL"]
WAIT = 10
signals = redis.asyncio.Redis.from_url(URL)


async def _enter_and_wait() -> None:
    await signals.rpush("entered", 1)
    await signals.blpop(["gate"], timeout=WAIT)


@throttle(
    AsyncConcurrencyThrottle(
        2, lease=30, backend=AsyncRedis(redis.asyncio.Redis.from_url(URL))
    )
)
async def slow(request):
    await _enter_and_wait()
    return HttpResponse("done")


@throttle(
    AsyncConcurrencyThrottle(
        1, lease=30, backend=AsyncRedis(redis.asyncio.Redis.from_url(URL))
    )
)
async def stream(request):
    async def content():
        yield b"first,"
        await _enter_and_wait()
        yield b"last"

    return StreamingHttpResponse(content())


@throttle(
    AsyncConcurrencyThrottle(
        1,
        lease=45,
        backend=AsyncRedis(redis.asyncio.Redis.from_url(URL)),
        scope="near",
    ),
    AsyncConcurrencyThrottle(
        1,
        lease=45,
        backend=AsyncRedis(redis.asyncio.Redis.from_url(LATE_URL)),
        scope="far",
    ),
)
async def two_slots(request):
    return HttpResponse("done")


async def health(request):
    return HttpResponse("ok")


urlpatterns = [
    path("slow/", slow),
    path("stream/", stream),
    path("two-slots/", two_slots),
    path("health/", health),
]
application = get_asgi_application()
