"""A Redis-backed Django cache's KEY_PREFIX and KEY_FUNCTION apply to every
state key, braces included: on the one server Django's Redis caches talk to
a key's hash tag does not matter, so throttling works and never fails per
request. Only a cache that writes to a Redis Cluster through a prefix or key
function that moves the hash tag gets a start-up warning,
``luathrottle.W002``, naming the cache."""

import hashlib
import uuid

import pytest
import redis
import redis.cluster
from django.core.cache import caches
from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from django_redis.client import DefaultClient

from luathrottle.backends.django_cache import AsyncDjangoCache, SyncDjangoCache
from luathrottle.django import AsyncThrottle, SyncThrottle, throttle
from luathrottle.django.checks import check_caches
from states import store_keys

pytestmark = pytest.mark.redis


def hashed_key(key: str, key_prefix: str, version: int) -> str:
    """A KEY_FUNCTION that leaves no braces in any key."""
    return hashlib.sha256(f"{key_prefix}:{version}:{key}".encode()).hexdigest()


class ClusterClient(DefaultClient):
    """A django-redis client that writes to a Redis Cluster, as custom
    cluster clients do: the URL in LOCATION is any node of the cluster."""

    def get_client(self, write=True, tried=None, show_index=False):
        return redis.cluster.RedisCluster.from_url(self._server[0])


def with_cache(options):
    def cache_settings(redis_url):
        from django.conf import settings

        return {**settings.CACHES, "keys": {**options(redis_url)}}

    return cache_settings


BRACES = with_cache(
    lambda url: {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": "{myapp}",
    }
)
HASHED = with_cache(
    lambda url: {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": url,
        "KEY_FUNCTION": "test_cache_key_functions.hashed_key",
    }
)
DJANGO_REDIS_BRACES = with_cache(
    lambda url: {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": "{myapp}",
    }
)


@pytest.mark.parametrize("cache_settings", [BRACES, HASHED, DJANGO_REDIS_BRACES])
def test_any_key_function_throttles_sync_views(rf, redis_url, cache_settings):
    with override_settings(CACHES=cache_settings(redis_url)):
        scope = uuid.uuid4().hex
        item = SyncThrottle(2, 60, backend=SyncDjangoCache("keys"), scope=scope)

        @throttle(item)
        def view(request):
            return HttpResponse("inside")

        request = rf.get("/", REMOTE_ADDR="203.0.113.40")
        codes = [view(request).status_code for _ in "abc"]
        assert codes == [200, 200, 429]
        key = item.state_key(request, "unused")
        assert key is not None
        [state_key] = store_keys([key])
        stored = caches["keys"].make_key(state_key)
        assert redis.Redis.from_url(redis_url).exists(stored) == 1
        assert check_caches() == []


@pytest.mark.parametrize("cache_settings", [BRACES, HASHED])
async def test_any_key_function_throttles_async_views(
    async_rf, redis_url, cache_settings
):
    with override_settings(CACHES=cache_settings(redis_url)):
        backend = AsyncDjangoCache("keys")

        @throttle(AsyncThrottle(2, 60, backend=backend, scope=uuid.uuid4().hex))
        async def view(request):
            return HttpResponse("inside")

        request = async_rf.get("/", REMOTE_ADDR="203.0.113.41")
        codes = [(await view(request)).status_code for _ in "abc"]
        assert codes == [200, 200, 429]
        await backend.aclose()


def cluster_cache(url, prefix):
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": prefix,
        "OPTIONS": {"CLIENT_CLASS": "test_cache_key_functions.ClusterClient"},
    }


def test_a_cluster_cache_that_moves_the_hash_tag_is_named_at_start_up(
    redis_cluster,
):
    from django.conf import settings

    caches_setting = {
        **settings.CACHES,
        "braced": cluster_cache(redis_cluster.url, "{myapp}"),
        "plain": cluster_cache(redis_cluster.url, "myapp"),
    }
    with override_settings(CACHES=caches_setting):
        messages = check_caches()
        assert [message.id for message in messages] == ["luathrottle.W002"]
        assert "'braced'" in messages[0].msg

        # The plain prefix keeps one identity's keys in one slot, so a
        # stage of two limits is one script call on the cluster.
        backend = SyncDjangoCache("plain")
        scope = uuid.uuid4().hex

        @throttle(
            SyncThrottle(2, 60, backend=backend, scope=scope),
            SyncThrottle(3, 3600, backend=backend, scope=scope),
        )
        def view(request):
            return HttpResponse("inside")

        request = RequestFactory().get("/", REMOTE_ADDR="203.0.113.42")
        assert [view(request).status_code for _ in "abc"] == [200, 200, 429]
