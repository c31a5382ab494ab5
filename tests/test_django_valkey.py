"""django-valkey's caches are Redis-backed caches: the direct path, on
their own server, for its sync, asyncio and cluster caches. Its plain
ValkeyCache also runs the whole Django cache suite (test_django_cache.py)."""

import subprocess
import sys

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings

from luathrottle import AsyncLimiter, Limiter
from luathrottle.backends.django_cache import AsyncDjangoCache, SyncDjangoCache
from luathrottle.django.checks import check_caches
from valkey_support import keys_on_every_primary, script_commands

pytestmark = pytest.mark.redis


def valkey_cache(backend, location):
    return {
        "BACKEND": backend,
        "LOCATION": location,
        "KEY_PREFIX": "dv",
    }


def test_django_valkeys_asyncio_cache_takes_the_direct_path(
    redis_url, redis_admin, clock
):
    """Its own client is asyncio: the sync backend gets a sync one of its
    server, and both twins count on the server, under the cache's keys."""
    cache = valkey_cache("django_valkey.async_cache.cache.AsyncValkeyCache", redis_url)
    with override_settings(CACHES={**settings.CACHES, "av": cache}):
        assert SyncDjangoCache("av").traits().unsafe_reason is None
        limiter = Limiter(3, 60, backend=SyncDjangoCache("av"), clock=clock)
        assert [limiter.hit("k").allowed for _ in range(2)] == [True, True]

        async def hits():
            backend = AsyncDjangoCache("av")
            twin = AsyncLimiter(3, 60, backend=backend, clock=clock)
            allowed = [(await twin.hit("k")).allowed for _ in range(2)]
            await backend.aclose()
            return allowed

        assert async_to_sync(hits)() == [True, False]
        # Leaving override_settings closes every cache without awaiting,
        # which this cache's close needs: it leaves first.
        del caches["av"]
    assert [key.decode()[:5] for key in redis_admin.keys("*")] == ["dv:1:"]
    assert set(script_commands(redis_admin)) <= {"fcall", "function|load", "eval"}


def test_django_valkeys_cluster_cache_takes_the_direct_path(
    valkey_cluster, redis_cluster
):
    cache = valkey_cache(
        "django_valkey.cluster_cache.cache.ClusterValkeyCache", redis_cluster.url
    )
    keys = keys_on_every_primary(valkey_cluster, 1)
    with override_settings(CACHES={**settings.CACHES, "cv": cache}):
        backend = SyncDjangoCache("cv")
        assert backend.traits().unsafe_reason is None
        limiter = Limiter(2, 60, backend=backend)
        for key in keys:
            assert [limiter.hit(key).allowed for _ in range(3)] == [True, True, False]

        async def hits():
            backend = AsyncDjangoCache("cv")
            twin = AsyncLimiter(2, 60, backend=backend)
            decisions = [await twin.peek(key) for key in keys]
            await backend.aclose()
            return [decision.remaining for decision in decisions]

        assert async_to_sync(hits)() == [0] * len(keys)
    # Each identity's keys carry the prefix, on the primary of their slot.
    stored = [key.decode() for key in valkey_cluster.keys(target_nodes="primaries")]
    assert len(stored) == len(keys)
    assert all(key.startswith("dv:1:") for key in stored)


def test_a_valkey_cluster_cache_that_moves_the_hash_tag_is_named_at_start_up(
    redis_cluster,
):
    braced = valkey_cache(
        "django_valkey.cluster_cache.cache.ClusterValkeyCache", redis_cluster.url
    )
    braced["KEY_PREFIX"] = "{myapp}"
    with override_settings(CACHES={**settings.CACHES, "braced": braced}):
        messages = check_caches()
    assert [message.id for message in messages] == ["luathrottle.W002"]
    assert "'braced'" in messages[0].msg


def test_classifying_a_cache_loads_no_django_valkey():
    # Loading django-valkey rewires Django's request_finished: only a
    # django-valkey cache may bring it in.
    code = (
        "import sys, django\n"
        "from django.conf import settings\n"
        "settings.configure(CACHES={'default': "
        "{'BACKEND': 'django.core.cache.backends.locmem.LocMemCache'}})\n"
        "django.setup()\n"
        "from luathrottle.backends.django_cache import SyncDjangoCache\n"
        "print(SyncDjangoCache('default').traits().shared_across_processes)\n"
        "print('django_valkey' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
