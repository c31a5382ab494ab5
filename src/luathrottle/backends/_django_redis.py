"""Reaching Redis through a Django cache: which caches are Redis-backed,
their own clients, and their key names.

Django and django-redis keep their clients behind private attributes
(``RedisCache._cache``, ``._servers``, ``._options``; django-redis's
``._server``, ``._params``); this module is the only one that reads them.
"""

import functools
from collections.abc import Sequence
from typing import Any, Literal

import redis.asyncio
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache
from redis.cluster import RedisCluster

__all__ = [
    "RedisKind",
    "async_client",
    "made_keys",
    "redis_kind",
    "scatters_hash_tags",
    "sync_client",
]

RedisKind = Literal["django", "django_redis"]


@functools.cache
def _django_redis_classes() -> tuple[type[Any], type[Any], type[Any]] | None:
    """django-redis's cache, sharded client and sentinel client, if installed."""
    try:
        from django_redis.cache import RedisCache as DjangoRedisCache
        from django_redis.client import SentinelClient, ShardClient
    except ImportError:
        return None
    return DjangoRedisCache, ShardClient, SentinelClient


def redis_kind(cache: BaseCache) -> RedisKind | None:
    """Which Redis-backed cache ``cache`` is, if it can run one script."""
    if isinstance(cache, RedisCache):
        return "django"
    classes = _django_redis_classes()
    if classes is None or not isinstance(cache, classes[0]):
        return None
    # A ShardClient has no single server to send a multi-key script to.
    return None if isinstance(cache.client, classes[1]) else "django_redis"


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
    if kind is None or not isinstance(sync_client(cache, kind), RedisCluster):
        return False
    key = "lt:probe:{tag}:1/60"
    return _hash_tag(cache.make_key(key)) != _hash_tag(key)


def sync_client(cache: BaseCache, kind: RedisKind) -> Any:
    """The cache's own client for writes (always its first server)."""
    raw: Any = cache
    if kind == "django":
        return raw._cache.get_client(None, write=True)
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


def _django_redis_location(cache: Any, cache_name: str) -> tuple[str, dict[str, Any]]:
    classes = _django_redis_classes()
    if classes is not None and isinstance(cache.client, classes[2]):
        raise ValueError(
            f"AsyncDjangoCache cannot build an asyncio client for cache "
            f"{cache_name!r}, which uses django-redis's SentinelClient; use "
            "AsyncRedis with a redis.asyncio Sentinel client instead"
        )
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
    else:
        url, options = _django_redis_location(cache, cache_name)
    return redis.asyncio.Redis.from_url(url, **options)
