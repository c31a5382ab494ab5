"""Reaching Redis through a Django cache: which caches are Redis-backed,
their own clients, and their key names.

Django, django-redis and django-valkey keep their clients behind private
attributes (``RedisCache._cache``, ``._servers``, ``._options``;
django-redis's and django-valkey's ``._server``, ``._params``); this module
is the only one that reads them.
"""

import functools
import sys
from collections.abc import Sequence
from typing import Any, Literal

import redis.asyncio
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache

from luathrottle.backends._clients import SYNC_CLUSTERS

__all__ = [
    "RedisKind",
    "async_client",
    "made_keys",
    "redis_kind",
    "scatters_hash_tags",
    "sync_client",
]

RedisKind = Literal["django", "django_redis", "django_valkey"]


@functools.cache
def _django_redis_classes() -> tuple[type[Any], type[Any], type[Any]] | None:
    """django-redis's cache, sharded client and sentinel client, if installed."""
    try:
        from django_redis.cache import RedisCache as DjangoRedisCache
        from django_redis.client import SentinelClient, ShardClient
    except ImportError:
        return None
    return DjangoRedisCache, ShardClient, SentinelClient


def _django_valkey_classes() -> (
    tuple[tuple[type[Any], ...], type[Any], type[Any]] | None
):
    """django-valkey's caches (sync, cluster, asyncio), its asyncio cache and
    its sharded client, once django-valkey is loaded.

    Any cache of django-valkey's has loaded it. Importing it otherwise would
    swap Django's request_finished receiver for one of django-valkey's own
    (a workaround of its for a Django bug): no app without a django-valkey
    cache gets that from luathrottle.
    """
    if sys.modules.get("django_valkey.base") is None:
        return None
    return _loaded_django_valkey_classes()


@functools.cache
def _loaded_django_valkey_classes() -> (
    tuple[tuple[type[Any], ...], type[Any], type[Any]] | None
):
    try:
        from django_valkey.async_cache.cache import AsyncValkeyCache
        from django_valkey.cache import ValkeyCache
        from django_valkey.client.sharded import ShardClient
        from django_valkey.cluster_cache.cache import ClusterValkeyCache
    except ImportError:
        return None
    caches = (ValkeyCache, ClusterValkeyCache, AsyncValkeyCache)
    return caches, AsyncValkeyCache, ShardClient


def redis_kind(cache: BaseCache) -> RedisKind | None:
    """Which Redis-backed cache ``cache`` is, if it can run one script."""
    if isinstance(cache, RedisCache):
        return "django"
    # A ShardClient has no single server to send a multi-key script to.
    classes = _django_redis_classes()
    if classes is not None and isinstance(cache, classes[0]):
        return None if isinstance(cache.client, classes[1]) else "django_redis"
    valkey_classes = _django_valkey_classes()
    if valkey_classes is not None and isinstance(cache, valkey_classes[0]):
        sharded = isinstance(cache.client, valkey_classes[2])
        return None if sharded else "django_valkey"
    return None


def _hash_tag(key: str) -> str | None:
    """The part of ``key`` that Redis Cluster hashes, when it has a tag."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return key[start + 1 : end] if end > start + 1 else None


def made_keys(cache: BaseCache, keys: Sequence[str]) -> list[str]:
    """``keys`` as the cache names them in Redis: its ``KEY_PREFIX``,
    ``VERSION`` and ``KEY_FUNCTION`` applied, braces and all. On one server
    (which Django's Redis caches talk to) a key's hash tag does not matter;
    see ``scatters_hash_tags`` for a cluster client."""
    return [cache.make_key(key) for key in keys]


def scatters_hash_tags(cache: BaseCache) -> bool:
    """Whether ``cache`` writes to a Redis Cluster through a key function
    that takes away the hash tag luathrottle puts in each key: then one
    identity's keys hash by the cache's prefix instead, all to one slot
    (braces in ``KEY_PREFIX``), or to several, which a cluster refuses."""
    kind = redis_kind(cache)
    if kind is None or not isinstance(sync_client(cache, kind), SYNC_CLUSTERS):
        return False
    key = "lt:probe:{tag}:1/60"
    return _hash_tag(cache.make_key(key)) != _hash_tag(key)


def sync_client(cache: BaseCache, kind: RedisKind) -> Any:
    """The cache's own client for writes (always its first server); for
    django-valkey's asyncio cache, whose own client is asyncio, a new sync
    client for that server.

    Raises:
        ValueError: the cache's client cannot be rebuilt for sync calls.
    """
    raw: Any = cache
    if kind == "django":
        return raw._cache.get_client(None, write=True)
    valkey_classes = _django_valkey_classes()
    if valkey_classes is not None and isinstance(cache, valkey_classes[1]):
        return _valkey_client(cache, "sync")
    return raw.client.get_client(write=True)


# Options of Django's RedisCache that name sync-only classes or do not
# reach the connection pool; the asyncio client uses its own.
_SYNC_ONLY_OPTIONS = frozenset({"serializer", "pool_class", "parser_class"})
_DJANGO_REDIS_OPTIONS = {
    "USERNAME": "username",
    "PASSWORD": "password",
    "SOCKET_TIMEOUT": "socket_timeout",
    "SOCKET_CONNECT_TIMEOUT": "socket_connect_timeout",
}


def _django_location(cache: Any) -> tuple[str, dict[str, Any]]:
    options = {
        name: value
        for name, value in cache._options.items()
        if name not in _SYNC_ONLY_OPTIONS
    }
    return cache._servers[0], options


def _django_redis_location(cache: Any) -> tuple[str, dict[str, Any]]:
    """The first server of a django-redis or django-valkey cache, and the
    client options its settings give (the two read the same ones)."""
    server = cache._server
    servers = server.split(",") if isinstance(server, str) else list(server)
    options = cache._params.get("OPTIONS", {})
    kwargs = {
        name: options[option]
        for option, name in _DJANGO_REDIS_OPTIONS.items()
        if options.get(option)
    }
    kwargs.update(options.get("CONNECTION_POOL_KWARGS", {}))
    return servers[0], kwargs


def async_client(cache: BaseCache, kind: RedisKind, cache_name: str) -> Any:
    """A new asyncio client for the server the cache writes to.

    Raises:
        ValueError: the cache's client cannot be rebuilt for asyncio.
    """
    if kind == "django":
        url, options = _django_location(cache)
        return redis.asyncio.Redis.from_url(url, **options)
    if kind == "django_valkey":
        return _valkey_client(cache, "asyncio", cache_name)
    raw: Any = cache
    classes = _django_redis_classes()
    if classes is not None and isinstance(raw.client, classes[2]):
        raise ValueError(
            f"AsyncDjangoCache cannot build an asyncio client for cache "
            f"{cache_name!r}, which uses django-redis's SentinelClient; use "
            "AsyncRedis with a redis.asyncio Sentinel client instead"
        )
    url, options = _django_redis_location(cache)
    return redis.asyncio.Redis.from_url(url, **options)


def _valkey_client(
    cache: Any, flavour: Literal["sync", "asyncio"], cache_name: str = ""
) -> Any:
    """A new valkey-py client of ``flavour`` for the server a django-valkey
    cache writes to: a cluster client for its cluster cache.

    Raises:
        ValueError: the cache reaches its server through Sentinel.
    """
    import valkey.asyncio
    import valkey.asyncio.cluster
    from django_valkey.async_cache.client.sentinel import AsyncSentinelClient
    from django_valkey.client.sentinel import SentinelClient
    from django_valkey.cluster_cache.cache import ClusterValkeyCache

    if isinstance(cache.client, SentinelClient | AsyncSentinelClient):
        raise ValueError(
            f"luathrottle cannot build a {flavour} client for cache "
            f"{cache_name or type(cache).__name__!r}, which uses django-valkey's "
            "Sentinel client; give SyncRedis or AsyncRedis a valkey Sentinel "
            "client instead"
        )
    url, options = _django_redis_location(cache)
    plain: Any = valkey.Valkey
    if flavour == "asyncio":
        # django-valkey's one cluster cache is sync; its asyncio twin is ours.
        cluster = isinstance(cache, ClusterValkeyCache)
        plain = (
            valkey.asyncio.cluster.ValkeyCluster if cluster else valkey.asyncio.Valkey
        )
    return plain.from_url(url, **options)
