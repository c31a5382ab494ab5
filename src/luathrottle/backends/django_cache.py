"""Django cache backends: the same Lua scripts, on whatever ``CACHES`` holds.

``SyncDjangoCache`` and ``AsyncDjangoCache`` look the cache up by alias
(``caches[cache_name]``) at a thread's first call, never at construction,
because Django hands every thread its own cache object and settings may not
be ready when a throttle is declared; each thread keeps its object until
``CACHES`` changes (``override_settings``). Under ASGI, where Django gives
each request's context its own object, the tasks of one event loop share
their thread's. Each cache object then resolves once to what it is:

Redis-backed caches (``django.core.cache.backends.redis.RedisCache``,
django-redis's ``RedisCache`` and django-valkey's ``ValkeyCache``,
``AsyncValkeyCache`` and ``ClusterValkeyCache``, except with their
``ShardClient``)
    Each decision is one EVALSHA on the cache's own server, through
    ``SyncRedis`` or ``AsyncRedis``: atomic across processes and machines.
    Every key goes through ``cache.make_key()``, so the cache's
    ``KEY_PREFIX``, ``VERSION`` and ``KEY_FUNCTION`` apply, braces
    included: on one server a key's hash tag does not matter. On a Redis
    Cluster client (``ClusterValkeyCache``, a custom django-redis client) a
    prefix or key function that moves the ``{...}`` hash tag would put every
    key in one slot, or one call's keys in several; the system check
    ``luathrottle.W002`` says so at start-up.

Every other cache (locmem, dummy, database, file, memcached...)
    The script runs in-process over a snapshot of its keys (see
    ``luathrottle.backends._staged``), which is atomic only within one
    process, so concurrent hits from several processes can be
    over-admitted. ``traits().unsafe_reason`` says so; the Django throttle
    layer turns it into ``UnsafeCacheBackendWarning``. ``DummyCache``
    stores nothing, so every hit is admitted.
"""

import threading
import weakref
from collections.abc import Sequence
from typing import Any, Literal

from django.conf import settings
from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.signals import setting_changed

from luathrottle._breaker import CircuitBreaker, guard_for
from luathrottle.backends import _django_redis
from luathrottle.backends._per_loop import PerLoop
from luathrottle.backends._staged import Staging
from luathrottle.backends.base import AsyncBackend, ScriptCall, StoreTraits, SyncBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.scripts import Script

__all__ = ["AsyncDjangoCache", "SyncDjangoCache", "UnsafeCacheBackendWarning"]


class UnsafeCacheBackendWarning(UserWarning):
    """A throttle stores its state in a cache that cannot keep limits exact.

    Final: do not subclass.
    """


def _describe(cache: BaseCache) -> tuple[bool, str | None]:
    """Whether ``cache`` is shared across processes, and why it cannot keep
    limits exact, if it cannot."""
    if _django_redis.redis_kind(cache) is not None:
        return True, None
    if isinstance(cache, LocMemCache):
        return False, (
            "LocMemCache keeps its data in each process: N processes admit up "
            "to N times the limit"
        )
    if isinstance(cache, DummyCache):
        return False, "DummyCache stores nothing: every hit is admitted"
    kind = f"{type(cache).__module__}.{type(cache).__qualname__}"
    return True, (
        f"{kind} cannot run a script atomically: processes that hit one key "
        "at once can admit more than the limit"
    )


# What each cache object resolves to, found once per object: Django keeps
# one per thread (and a new one after settings change), so these are weak.
_STAGED: Literal["staged"] = "staged"
_Kind = _django_redis.RedisKind | Literal["staged"]
_KINDS: "weakref.WeakKeyDictionary[BaseCache, _Kind]" = weakref.WeakKeyDictionary()
_SYNC_REDIS: "weakref.WeakKeyDictionary[BaseCache, SyncRedis | None]" = (
    weakref.WeakKeyDictionary()
)


def _kind(cache: BaseCache) -> _Kind:
    kind = _KINDS.get(cache)
    if kind is None:
        kind = _KINDS[cache] = _django_redis.redis_kind(cache) or _STAGED
    return kind


#: Each thread's cache objects by alias, as ``caches[alias]`` gave them, with
#: the ``CACHES`` they came from (``_settings``): ``caches[alias]`` reads
#: asgiref's context-local storage, which costs as much as a quarter of the
#: rest of a staged call.
_FOUND = threading.local()
#: How many times ``CACHES`` has changed (tests override it).
_settings = 0


def _caches_changed(*, setting: str, **kwargs: Any) -> None:
    global _settings
    if setting == "CACHES":
        _settings += 1


setting_changed.connect(_caches_changed, dispatch_uid="luathrottle.backends.caches")


class _DjangoCacheBase:
    """What both twins share: the alias, its lookups, traits and the
    staged store; the twins differ only in the calls they await."""

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
        # The Redis backends this resolves to have no guard of their own.
        self._guard = guard_for(breaker, f"django cache {cache_name}")
        self._identity = (type(self), cache_name)
        self._staging = Staging(cache_name)

    def check(self) -> None:
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

    def traits(self) -> StoreTraits:
        """The cache as a store: two backends on one alias are one store;
        only Redis-backed caches keep limits exact.

        Raises:
            ValueError: ``settings.CACHES`` has no such cache.
        """
        self.check()
        cache = self._cache()
        shared, reason = _describe(cache)
        return StoreTraits(
            self._identity,
            shared_across_processes=shared,
            # Named by its alias: each cache is warned about once.
            unsafe_reason=reason and f"CACHES[{self.cache_name!r}]: {reason}",
            sorted_sets=_kind(cache) != _STAGED,
        )

    def _cache(self) -> BaseCache:
        found: tuple[int, dict[str, BaseCache]] | None = getattr(_FOUND, "caches", None)
        if found is None or found[0] != _settings:
            found = _FOUND.caches = (_settings, {})
        cache = found[1].get(self.cache_name)
        if cache is None:
            try:
                cache = found[1][self.cache_name] = caches[self.cache_name]
            except InvalidCacheBackendError as exc:
                raise ValueError(f"cache_name {self.cache_name!r}: {exc}") from exc
        return cache

    def _made_calls(
        self, cache: BaseCache, calls: Sequence[ScriptCall]
    ) -> list[ScriptCall]:
        return [
            (script, _django_redis.made_keys(cache, keys), args)
            for script, keys, args in calls
        ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cache_name!r})"


class SyncDjangoCache(_DjangoCacheBase, SyncBackend):
    """Runs the scripts on a Django cache, for sync limiters and throttles.

    Atomic across processes on Redis-backed caches; elsewhere atomic only
    within one process (see the module docstring and ``traits()``). Holds
    no state per algorithm: one object serves every limiter.

    Args:
        cache_name: an alias of ``settings.CACHES``, looked up at each
            thread's first call.
        breaker: trips after repeated failures; a new ``CircuitBreaker()``
            by default, ``False`` for none.

    Raises:
        TypeError: ``cache_name`` is not a str.
        ValueError: ``cache_name`` is empty.
    """

    def _redis(self, cache: BaseCache) -> SyncRedis | None:
        try:
            return _SYNC_REDIS[cache]
        except KeyError:
            kind = _kind(cache)
            backend = None
            if kind != _STAGED:
                client = _django_redis.sync_client(cache, kind)
                # Called inside this backend's own guard, never through
                # the public methods that coalesce.
                backend = SyncRedis(client, breaker=False, coalesce=False)
            _SYNC_REDIS[cache] = backend
            return backend

    def _run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        cache = self._cache()
        redis = self._redis(cache)
        if redis is None:
            return self._staging.run_one(cache, (script, keys, args))
        made = _django_redis.made_keys(cache, keys)
        return redis._run_script(script, made, args)

    def _run_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        cache = self._cache()
        redis = self._redis(cache)
        if redis is None:
            return self._staging.run(cache, calls)
        return redis._run_scripts(self._made_calls(cache, calls))

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys``, present or not.

        Raises:
            BackendError: the cache failed; the cause is chained.
        """
        if not keys:
            return
        cache = self._cache()
        redis = self._redis(cache)
        if redis is not None:
            redis.delete_keys(_django_redis.made_keys(cache, keys))
            return
        with self._staging.errors("delete_many"):
            cache.delete_many(keys)

    def load_script(self, script: Script) -> None:
        """SCRIPT LOAD ``script``, or compile it in-process.

        Raises:
            BackendError: the cache or the compiler failed.
        """
        redis = self._redis(self._cache())
        if redis is None:
            self._staging.compile(script)
        else:
            redis.load_script(script)


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

    Takes ``SyncDjangoCache``'s arguments, and raises as it does.
    """

    def __init__(
        self,
        cache_name: str = "default",
        *,
        breaker: CircuitBreaker | Literal[False] | None = None,
    ) -> None:
        super().__init__(cache_name, breaker=breaker)
        self._clients: PerLoop[AsyncRedis] = PerLoop()

    def _redis(self, cache: BaseCache) -> AsyncRedis | None:
        kind = _kind(cache)
        if kind == _STAGED:
            return None
        return self._clients.get(lambda: self._new_redis(cache, kind))

    def _new_redis(self, cache: BaseCache, kind: _django_redis.RedisKind) -> AsyncRedis:
        client = _django_redis.async_client(cache, kind, self.cache_name)
        return AsyncRedis(client, breaker=False, coalesce=False)

    async def _arun_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        cache = self._cache()
        redis = self._redis(cache)
        if redis is None:
            return await self._staging.arun_one(cache, (script, keys, args))
        made = _django_redis.made_keys(cache, keys)
        return await redis._arun_script(script, made, args)

    async def _arun_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        cache = self._cache()
        redis = self._redis(cache)
        if redis is None:
            return await self._staging.arun(cache, calls)
        return await redis._arun_scripts(self._made_calls(cache, calls))

    async def adelete_keys(self, keys: Sequence[str]) -> None:
        """``delete_keys``, for async callers."""
        if not keys:
            return
        cache = self._cache()
        redis = self._redis(cache)
        if redis is not None:
            made = _django_redis.made_keys(cache, keys)
            await redis.adelete_keys(made)
            return
        with self._staging.errors("adelete_many"):
            await cache.adelete_many(keys)

    async def aload_script(self, script: Script) -> None:
        """``load_script``, for async callers."""
        redis = self._redis(self._cache())
        if redis is None:
            self._staging.compile(script)
        else:
            await redis.aload_script(script)

    async def aclose(self) -> None:
        """Close the asyncio Redis client of the running loop, if it has one.

        The next call in this loop builds a new one.
        """
        backend = self._clients.pop()
        if backend is not None:
            await backend.client.aclose()
