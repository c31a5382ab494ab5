"""Seed section "Customizing throttling": rates, backends and algorithms."""

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt

from luathrottle.django import Rate, SyncThrottle, ThrottledView
from luathrottle.django.algorithms import LeakyBucket
from luathrottle.django.backends import BaseThrottleSyncBackend, SyncDjangoCache
from luathrottle.django.backends.redis import SyncRedis
from seed_project.views import to_response


# Seed (rates): a settings-level SyncThrottle(max_requests=5,
# duration_in_seconds=10). The settings hold one generous throttle already
# (see settings.py), so this rule guards one view instead.
class CustomSecondsController(ThrottledView):
    throttling = (SyncThrottle(max_requests=5, duration_in_seconds=10),)

    def get(self, request: HttpRequest) -> HttpResponse:
        return to_response("inside")


# Seed (backends): the state lives in the 'throttling' Django cache.
class CacheNameController(ThrottledView):
    throttling = (
        SyncThrottle(
            max_requests=1,
            duration_in_seconds=Rate.minute,
            backend=SyncDjangoCache(cache_name="throttling"),
        ),
    )

    def get(self, request: HttpRequest) -> HttpResponse:
        return to_response("inside")


def _redis_client_backend() -> BaseThrottleSyncBackend:
    cache = caches["redis"]
    if not isinstance(cache, RedisCache):
        # settings_embedded has no Redis: the cache itself stands in.
        return SyncDjangoCache(cache_name="redis")
    # If `CACHES['redis']` with `django.core.cache.backends.redis.RedisCache`
    # backend is defined in `settings.py`:
    redis_client = cache._cache.get_client()
    return SyncRedis(redis_client)


# Seed (backends): a Redis client of your own, here the 'redis' cache's.
class RedisClientController(ThrottledView):
    throttling = (
        SyncThrottle(
            max_requests=1,
            duration_in_seconds=Rate.minute,
            backend=_redis_client_backend(),
        ),
    )

    def get(self, request: HttpRequest) -> HttpResponse:
        return to_response("inside")


# Seed (algorithms): LeakyBucket instead of the default SimpleRate.
class LeakyBucketController(ThrottledView):
    throttling = (
        SyncThrottle(
            max_requests=1,
            duration_in_seconds=Rate.minute,
            algorithm=LeakyBucket(),
        ),
    )

    def get(self, request: HttpRequest) -> HttpResponse:
        return to_response("inside")


# Seed (algorithms): LeakyBucket on an abuse-sensitive endpoint. An API
# endpoint without cookies has no CSRF token to check; without the exemption
# CsrfViewMiddleware answers every POST 403 before the throttle runs.
@method_decorator(csrf_exempt, name="dispatch")
class LoginController(ThrottledView):
    throttling = (
        SyncThrottle(
            max_requests=5,
            duration_in_seconds=Rate.minute,
            algorithm=LeakyBucket(),
        ),
    )

    def post(self, request: HttpRequest) -> HttpResponse:
        return to_response("logged in")
