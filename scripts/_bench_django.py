"""Django in the bench process: settings, requests, and luathrottle's views.

``configure(url)`` sets Django up once with ``settings.configure``: the
``default`` cache is Django's ``RedisCache`` on the bench's server, which
django-ratelimit, Django REST framework, django-modern-rest's Django-cache
backend and luathrottle's ``SyncDjangoCache`` all use; the ``locmem`` cache
is Django's ``LocMemCache`` (its default cache), where luathrottle's
``SyncDjangoCache`` takes the staged path and django-modern-rest's
``SyncDjangoCache`` sits beside it. Each operation of a
Django case is one request built by ``RequestFactory`` and passed to the
view, as Django's handler would, without middleware.
"""

import importlib.util
from collections.abc import Callable, Iterator
from itertools import count
from typing import Any

import redis
from django.http import HttpRequest, HttpResponse

from _bench_measure import Case

__all__ = ["LOCMEM", "addresses", "configure", "django_cases", "request_op"]

#: The alias of the LocMemCache that the staged-path cases share with dmr's.
LOCMEM = "locmem"

#: Peer apps added to INSTALLED_APPS when they are installed.
_PEER_APPS = ("rest_framework", "dmr")
_addresses = count(1)
View = Callable[[HttpRequest], Any]


def configure(url: str) -> None:
    """Configure Django for the in-process cases; a no-op the second time."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    apps = [app for app in _PEER_APPS if importlib.util.find_spec(app) is not None]
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "luathrottle.django",
            *apps,
        ],
        DATABASES={},
        USE_TZ=True,
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
                "KEY_PREFIX": "bench",
            },
            LOCMEM: {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "LOCATION": "bench",
            },
        },
        LUATHROTTLE={"allow_unsafe_cache": None},
        RATELIMIT_USE_CACHE="default",
        REST_FRAMEWORK={
            "DEFAULT_THROTTLE_RATES": {"anon": "1000000000/second"},
            "DEFAULT_AUTHENTICATION_CLASSES": [],
            "DEFAULT_PERMISSION_CLASSES": [],
            "UNAUTHENTICATED_USER": None,
        },
    )
    django.setup()


urlpatterns: list[object] = []


def addresses() -> Iterator[str]:
    """Fresh client addresses: one identity each, for any throttle."""
    while True:
        number = next(_addresses)
        yield f"10.{number // 65536 % 256}.{number // 256 % 256}.{number % 256}"


def request_op(view: View, address: str, path: str = "/bench/") -> Callable[[], Any]:
    """One request from ``address`` through ``view``, checked to be a 200."""
    from django.test import RequestFactory

    factory = RequestFactory()

    def op() -> Any:
        response = view(factory.get(path, REMOTE_ADDR=address))
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.content!r}")
        return response

    return op


def django_case(
    key: str,
    label: str,
    group: str,
    view: View,
    limits: int,
    note: str = "",
    *,
    on_redis: bool = True,
) -> Case:
    """A case whose operation is one request; the probe, one from elsewhere.
    ``on_redis=False`` marks throttles whose state is not on the bench's
    Redis, whose statistics then mean nothing."""
    fresh = addresses()
    return Case(
        key,
        label,
        group,
        op=request_op(view, next(fresh)),
        probe=lambda: request_op(view, next(fresh))(),
        limits=limits,
        uses_redis=on_redis and limits > 0,
        note=note,
    )


def _inside(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b'"inside"', content_type="application/json")


def _named(key: str) -> View:
    def view(request: HttpRequest) -> HttpResponse:
        return _inside(request)

    # The throttle decorator scopes counters by the view's name.
    view.__name__ = view.__qualname__ = key.replace(".", "_")
    return view


def django_cases(client: redis.Redis) -> list[Case]:
    """A plain view, and luathrottle's view with 1 and 3 throttles and the
    full rate-limit headers, on SyncRedis and on Django's RedisCache; and
    with 3 throttles on Django's LocMemCache, the staged path."""
    from luathrottle.backends.django_cache import SyncDjangoCache
    from luathrottle.backends.redis import SyncRedis
    from luathrottle.django import Rate, SyncThrottle, throttle

    sync_redis = SyncRedis(client)
    cases = [
        django_case("django.plain", "Django view, no throttle", "django", _inside, 0)
    ]
    rates = (Rate.second, Rate.minute, Rate.hour)
    for backend_name, backend in (("redis", sync_redis), ("cache", None)):
        where = "SyncRedis" if backend is not None else "SyncDjangoCache(RedisCache)"
        for size in (1, 3):
            key = f"lt_django.{backend_name}.{size}"
            throttles = [
                SyncThrottle(1_000_000, rate, backend=backend) for rate in rates[-size:]
            ]
            view = throttle(*throttles, headers_on_every_response=True)(_named(key))
            plural = "s" if size > 1 else ""
            label = f"luathrottle view, {size} throttle{plural} + headers, {where}"
            cases.append(django_case(key, label, "luathrottle-django", view, size))
    locmem = SyncDjangoCache(LOCMEM)
    key = "lt_django.locmem.3"
    view = throttle(
        *(SyncThrottle(1_000_000, rate, backend=locmem) for rate in rates),
        headers_on_every_response=True,
    )(_named(key))
    label = "luathrottle view, 3 throttles + headers, SyncDjangoCache(LocMemCache)"
    cases.append(django_case(key, label, "luathrottle-django", view, 3, on_redis=False))
    return cases
