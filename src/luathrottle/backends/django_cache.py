"""Django cache backends: the same Lua scripts, on whatever ``CACHES`` holds.

``SyncDjangoCache`` and ``AsyncDjangoCache`` look the cache up by alias
(``caches[cache_name]``) at each call, never at construction, because Django
hands every thread its own cache object and settings may not be ready when a
throttle is declared. What they do then depends on the cache:

Redis-backed caches (``django.core.cache.backends.redis.RedisCache`` and
django-redis's ``RedisCache``, except its ``ShardClient``)
    Each decision is one EVALSHA on the cache's own server, through
    ``SyncRedis`` or ``AsyncRedis``: atomic across processes and machines.
    Every key goes through ``cache.make_key()``, so the cache's
    ``KEY_PREFIX``, ``VERSION`` and ``KEY_FUNCTION`` apply. Django's default
    key function writes ``prefix:version:key``, which keeps the ``{...}``
    hash tag the core puts in each key; a transform that changes a key's
    hash tag would spread one call's keys over Redis Cluster slots, so it
    raises ``ValueError`` instead.

Every other cache (locmem, dummy, database, file, memcached...)
    The script runs in-process, in embedded Lua 5.1, over a snapshot of its
    keys read with ``get_many``; what it set is written back with
    ``set_many`` (timeouts rounded up to whole seconds) and what it deleted
    with ``delete_many``. This read-modify-write is atomic only within one
    process: every backend object on one alias shares one lock per process
    (sync) or per event loop (async), but the sync and async twins do not
    wait for each other, and other processes are not held off at all, so
    concurrent hits there can be over-admitted. ``unsafe_reason()`` says so;
    the Django throttle layer turns it into ``UnsafeCacheBackendWarning``.
    ``DummyCache`` stores nothing, so every hit is admitted.
"""

import asyncio
import contextlib
import functools
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import redis
import redis.asyncio
from django.conf import settings
from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.backends._lua import EmbeddedLua, LuaError
from luathrottle.backends.base import AsyncBackend, SyncBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.exceptions import BackendError
from luathrottle.failures import CircuitBreaker, breaker_option
from luathrottle.scripts import Script

__all__ = ["AsyncDjangoCache", "SyncDjangoCache", "UnsafeCacheBackendWarning"]


class UnsafeCacheBackendWarning(UserWarning):
    """A throttle stores its state in a cache that cannot keep limits exact.

    Final: do not subclass.
    """


_RedisKind = Literal["django", "django_redis"]
_T = TypeVar("_T")


@functools.cache
def _django_redis_classes() -> tuple[type[Any], type[Any], type[Any]] | None:
    """django-redis's cache, sharded client and sentinel client, if installed."""
    try:
        from django_redis.cache import (
            RedisCache as DjangoRedisCache,
        )
        from django_redis.client import (
            SentinelClient,
            ShardClient,
        )
    except ImportError:
        return None
    return DjangoRedisCache, ShardClient, SentinelClient


def _redis_kind(cache: BaseCache) -> _RedisKind | None:
    """Which Redis-backed cache ``cache`` is, if it can run one script."""
    if isinstance(cache, RedisCache):
        return "django"
    classes = _django_redis_classes()
    if classes is None or not isinstance(cache, classes[0]):
        return None
    # A ShardClient has no single server to send a multi-key script to.
    return None if isinstance(cache.client, classes[1]) else "django_redis"


def _unsafe_reason(cache: BaseCache) -> str | None:
    if _redis_kind(cache) is not None:
        return None
    if isinstance(cache, LocMemCache):
        return (
            "LocMemCache keeps its data in each process: N processes admit up "
            "to N times the limit"
        )
    if isinstance(cache, DummyCache):
        return "DummyCache stores nothing: every hit is admitted"
    kind = f"{type(cache).__module__}.{type(cache).__qualname__}"
    return (
        f"{kind} cannot run a script atomically: processes that hit one key "
        "at once can admit more than the limit"
    )


def _hash_tag(key: str) -> str | None:
    """The part of ``key`` that Redis Cluster hashes, when it has a tag."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return key[start + 1 : end] if end > start + 1 else None


def _made_keys(cache: BaseCache, cache_name: str, keys: Sequence[str]) -> list[str]:
    """``keys`` as the cache names them in Redis, hash tags intact."""
    made = [cache.make_key(key) for key in keys]
    for key, new in zip(keys, made, strict=True):
        if _hash_tag(new) != _hash_tag(key):
            raise ValueError(
                f"cache {cache_name!r} turns key {key!r} into {new!r}, which "
                "changes its {...} hash tag; its KEY_PREFIX and KEY_FUNCTION "
                "must keep braces out and the key's own braces intact"
            )
    return made


def _sync_redis(cache: BaseCache, kind: _RedisKind, key: str | None) -> SyncRedis:
    """The cache's own client for writes, as a ``SyncRedis``."""
    raw: Any = cache
    if kind == "django":
        return SyncRedis(raw._cache.get_client(key, write=True), breaker=False)
    return SyncRedis(raw.client.get_client(write=True), breaker=False)


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


def _async_redis(cache: BaseCache, kind: _RedisKind, cache_name: str) -> AsyncRedis:
    """A new asyncio client for the server the cache writes to."""
    if kind == "django":
        url, options = _django_location(cache)
    else:
        url, options = _django_redis_location(cache, cache_name)
    return AsyncRedis(redis.asyncio.Redis.from_url(url, **options), breaker=False)


class _PerLoop(Generic[_T]):
    """One value per running event loop, built on first use in that loop.

    asyncio clients and locks belong to the loop that first used them, so
    none is shared between loops. Values of closed loops are dropped when a
    new loop arrives.
    """

    def __init__(self) -> None:
        self._values: dict[asyncio.AbstractEventLoop, _T] = {}
        self._guard = threading.Lock()

    def get(self, factory: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        with self._guard:
            value = self._values.get(loop)
            if value is None:
                self._values = {
                    key: item
                    for key, item in self._values.items()
                    if not key.is_closed()
                }
                value = self._values[loop] = factory()
            return value

    def pop(self) -> _T | None:
        with self._guard:
            return self._values.pop(asyncio.get_running_loop(), None)


_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_LOOP_LOCKS: _PerLoop[dict[str, asyncio.Lock]] = _PerLoop()

_STAGING_KEYSPACE = """
local state

function commands.GET(key)
  local value = state.data[key]
  if value == nil then return false end
  return value
end
function commands.SET(key, value, option, ttl)
  local ms = false
  if option ~= nil then ms = px_ms(option, ttl) end
  state.data[key] = tostring(value)
  state.sets[key], state.dels[key] = {tostring(value), ms}, nil
  return {ok = 'OK'}
end
function commands.DEL(...)
  local deleted = 0
  for _, key in ipairs({...}) do
    if state.data[key] ~= nil then deleted = deleted + 1 end
    state.data[key], state.sets[key], state.dels[key] = nil, nil, true
  end
  return deleted
end

local function run_staged(script, clock_us, snapshot, nkeys, ...)
  clock.now = clock_us
  state = {data = snapshot, sets = {}, dels = {}}
  local reply = call_script(script, nkeys, ...)
  return reply, state.sets, state.dels
end

return run_staged
"""


@dataclass(frozen=True, slots=True)
class _Staged:
    """What one in-process script call answered and changed."""

    reply: list[int]
    writes: dict[int | None, dict[str, str]]
    deletes: list[str]


#: Ints this wide or wider are no state of ours.
_MAX_INT = 2**64


def _as_state(key: str, value: object) -> str:
    """A cached value as the string a script reads, as a Redis-backed cache
    would hold it: a str as it is, an int as its digits (the script decides
    whether it can read them).

    Raises:
        BackendError: any other value, as Redis answers WRONGTYPE for a key
            that holds no string.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # Python refuses to write ints of thousands of digits; "" is a state
        # no script reads.
        return str(value) if -_MAX_INT < value < _MAX_INT else ""
    raise BackendError(f"cache key {key!r} holds a {type(value).__name__}")


def _timeout(ms: Any) -> int | None:
    """A SET's PX as a cache timeout: whole seconds, rounded up."""
    return None if ms is False else max(1, math.ceil(ms / 1000))


class _Staging:
    """Runs scripts in embedded Lua over a snapshot of their keys."""

    def __init__(self) -> None:
        self._lua = EmbeddedLua("django cache", _STAGING_KEYSPACE)
        (self._run,) = self._lua.entry_points

    def compile(self, script: Script) -> None:
        try:
            self._lua.function(script)
        except LuaError as exc:
            raise BackendError(f"{script.name}: {exc}") from exc

    def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[str],
        snapshot: Mapping[str, Any],
    ) -> _Staged:
        table = self._lua.runtime.table_from(
            {key: _as_state(key, value) for key, value in snapshot.items()}
        )
        now_us = time.time_ns() // 1000
        try:
            reply, sets, dels = self._run(
                self._lua.function(script), now_us, table, len(keys), *keys, *args
            )
        except LuaError as exc:
            raise BackendError(f"{script.name}: {exc}") from exc
        writes: dict[int | None, dict[str, str]] = {}
        for key, entry in sets.items():
            writes.setdefault(_timeout(entry[2]), {})[key] = entry[1]
        values = (reply[index] for index in range(1, len(reply) + 1))
        return _Staged(self._lua.integers(values), writes, list(dels))


@contextlib.contextmanager
def _cache_errors(cache_name: str, operation: str) -> Iterator[None]:
    """Translate whatever the cache raised into ``BackendError``."""
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:
        raise BackendError(f"cache {cache_name!r} {operation}: {exc}") from exc


def _check_set_many(cache_name: str, failed: Sequence[str]) -> None:
    if failed:
        raise BackendError(f"cache {cache_name!r} did not store keys {list(failed)}")


class _DjangoCacheBase:
    """What both twins share: the alias, the lookups, the embedded Lua."""

    def __init__(
        self,
        cache_name: str = "default",
        *,
        breaker: CircuitBreaker | Literal[False] | None = None,
    ) -> None:
        if not isinstance(cache_name, str):
            raise TypeError(
                f"cache_name must be a str, got {type(cache_name).__name__} "
                f"{cache_name!r}"
            )
        if not cache_name:
            raise ValueError("cache_name must not be empty")
        self.cache_name = cache_name
        self.breaker = breaker_option(breaker)
        self._staging_lua: _Staging | None = None

    def check_cache_name(self) -> None:
        """Check that ``settings.CACHES`` defines ``cache_name``.

        Raises:
            ValueError: naming the missing alias and the ones there are.
        """
        if self.cache_name not in settings.CACHES:
            known = ", ".join(repr(name) for name in settings.CACHES)
            raise ValueError(
                f"cache_name {self.cache_name!r} is not in settings.CACHES "
                f"(it has {known or 'nothing'})"
            )

    def unsafe_reason(self) -> str | None:
        """Why this cache cannot keep limits exact, if it cannot.

        Returns:
            None for Redis-backed caches, where every decision is atomic;
            otherwise a short reason for a warning or an error.

        Raises:
            ValueError: ``settings.CACHES`` has no such cache.
        """
        return _unsafe_reason(self._cache())

    def _cache(self) -> BaseCache:
        try:
            return caches[self.cache_name]
        except InvalidCacheBackendError as exc:
            raise ValueError(f"cache_name {self.cache_name!r}: {exc}") from exc

    def _staging(self) -> _Staging:
        # Built on first use so that Redis-backed caches never pay for Lua.
        if self._staging_lua is None:
            self._staging_lua = _Staging()
        return self._staging_lua

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cache_name!r})"


class SyncDjangoCache(_DjangoCacheBase, SyncBackend):
    """Runs the scripts on a Django cache, for sync limiters and throttles.

    Atomic across processes on Redis-backed caches; elsewhere atomic only
    within one process (see the module docstring and ``unsafe_reason()``).
    Holds no state per algorithm: one object serves every limiter.

    Args:
        cache_name: an alias of ``settings.CACHES``, looked up at each call.
        breaker: trips after repeated failures; a new ``CircuitBreaker()``
            by default, ``False`` for none.

    Raises:
        TypeError: ``cache_name`` is not a str.
        ValueError: ``cache_name`` is empty.
    """

    def run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        """Run ``script``: one EVALSHA on Redis, or in-process elsewhere.

        Returns:
            The script's reply, as integers.

        Raises:
            BackendError: the cache or the script failed; the cause is chained.
            ValueError: the cache is missing, or its key function breaks
                the keys' hash tag.
        """
        cache = self._cache()
        kind = _redis_kind(cache)
        if kind is None:
            return self._run_staged(cache, script, keys, args)
        made = _made_keys(cache, self.cache_name, keys)
        return _sync_redis(cache, kind, made[0]).run_script(script, made, args)

    def _run_staged(
        self, cache: BaseCache, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        with _PROCESS_LOCKS.setdefault(self.cache_name, threading.Lock()):
            with _cache_errors(self.cache_name, "get_many"):
                snapshot = cache.get_many(keys)
            staged = self._staging().run(script, keys, args, snapshot)
            with _cache_errors(self.cache_name, "write back"):
                for timeout, values in staged.writes.items():
                    _check_set_many(self.cache_name, cache.set_many(values, timeout))
                if staged.deletes:
                    cache.delete_many(staged.deletes)
        return staged.reply

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys``, present or not.

        Raises:
            BackendError: the cache failed; the cause is chained.
        """
        if not keys:
            return
        cache = self._cache()
        kind = _redis_kind(cache)
        if kind is None:
            with _cache_errors(self.cache_name, "delete_many"):
                cache.delete_many(keys)
            return
        made = _made_keys(cache, self.cache_name, keys)
        _sync_redis(cache, kind, made[0]).delete_keys(made)

    def initialize_algorithm(self, algorithm: BaseThrottleAlgorithm) -> None:
        """SCRIPT LOAD the algorithm's script, or compile it in-process.

        Raises:
            BackendError: the cache or the compiler failed.
        """
        cache = self._cache()
        kind = _redis_kind(cache)
        if kind is None:
            self._staging().compile(algorithm.script)
        else:
            _sync_redis(cache, kind, None).initialize_algorithm(algorithm)


class AsyncDjangoCache(_DjangoCacheBase, AsyncBackend):
    """Runs the scripts on a Django cache, for async limiters and throttles.

    On a Redis-backed cache it talks to the cache's server through its own
    ``redis.asyncio`` client, built from the cache's location and options
    once per event loop (asyncio connections belong to one loop), so no
    call blocks the loop in a thread. Options that name sync-only classes
    (``serializer``, ``pool_class``, ``parser_class``) do not apply to it.
    Await ``aclose()`` in a loop before closing it, to close that client.

    Elsewhere, the cache's async methods read and write the snapshot; the
    read-modify-write is atomic only among the tasks of one event loop.

    Args:
        cache_name: an alias of ``settings.CACHES``, looked up at each call.
        breaker: trips after repeated failures; a new ``CircuitBreaker()``
            by default, ``False`` for none.

    Raises:
        TypeError: ``cache_name`` is not a str.
        ValueError: ``cache_name`` is empty.
    """

    def __init__(
        self,
        cache_name: str = "default",
        *,
        breaker: CircuitBreaker | Literal[False] | None = None,
    ) -> None:
        super().__init__(cache_name, breaker=breaker)
        self._clients: _PerLoop[AsyncRedis] = _PerLoop()

    def _redis(self, cache: BaseCache, kind: _RedisKind) -> AsyncRedis:
        return self._clients.get(lambda: _async_redis(cache, kind, self.cache_name))

    async def arun_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        """Run ``script``: one EVALSHA on Redis, or in-process elsewhere.

        Returns:
            The script's reply, as integers.

        Raises:
            BackendError: the cache or the script failed; the cause is chained.
            ValueError: the cache is missing, or its key function breaks
                the keys' hash tag.
        """
        cache = self._cache()
        kind = _redis_kind(cache)
        if kind is None:
            return await self._arun_staged(cache, script, keys, args)
        made = _made_keys(cache, self.cache_name, keys)
        return await self._redis(cache, kind).arun_script(script, made, args)

    async def _arun_staged(
        self, cache: BaseCache, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        locks = _LOOP_LOCKS.get(dict)
        async with locks.setdefault(self.cache_name, asyncio.Lock()):
            with _cache_errors(self.cache_name, "aget_many"):
                snapshot = await cache.aget_many(keys)
            staged = self._staging().run(script, keys, args, snapshot)
            with _cache_errors(self.cache_name, "write back"):
                for timeout, values in staged.writes.items():
                    failed = await cache.aset_many(values, timeout)
                    _check_set_many(self.cache_name, failed)
                if staged.deletes:
                    await cache.adelete_many(staged.deletes)
        return staged.reply

    async def adelete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys``, present or not.

        Raises:
            BackendError: the cache failed; the cause is chained.
        """
        if not keys:
            return
        cache = self._cache()
        kind = _redis_kind(cache)
        if kind is None:
            with _cache_errors(self.cache_name, "adelete_many"):
                await cache.adelete_many(keys)
            return
        made = _made_keys(cache, self.cache_name, keys)
        await self._redis(cache, kind).adelete_keys(made)

    async def ainitialize_algorithm(self, algorithm: BaseThrottleAlgorithm) -> None:
        """SCRIPT LOAD the algorithm's script, or compile it in-process.

        Raises:
            BackendError: the cache or the compiler failed.
        """
        cache = self._cache()
        kind = _redis_kind(cache)
        if kind is None:
            self._staging().compile(algorithm.script)
        else:
            await self._redis(cache, kind).ainitialize_algorithm(algorithm)

    async def aclose(self) -> None:
        """Close the asyncio Redis client of the running loop, if it has one.

        The next call in this loop builds a new one.
        """
        backend = self._clients.pop()
        if backend is not None:
            await backend.client.aclose()
