"""Concurrency throttles: at most N requests of one client in a view at once.

A concurrency throttle is no rate: it holds a lease of a
``ConcurrencyLimiter`` for the length of the view. In a throttled view it
runs as a step of its own around the handler, after both rate stages and
auth have passed (so a request they refuse never takes a slot): the
throttles' leases are taken one script call each, the handler runs, and the
leases are released when the response is produced, or, for a streaming
response, when its content is exhausted or closed. A full view answers 429
with ``Retry-After``: the time until the oldest lease expires.
"""

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, TypeVar, cast

from luathrottle._events import Observer, check_observers, check_shadow
from luathrottle._failures import OnFailure, check_on_failure
from luathrottle._lease_options import (
    check_lease,
    check_lease_store,
    check_max_in_flight,
    refuse_clock,
)
from luathrottle.backends.base import AsyncBackend, SyncBackend, check_backend_kind
from luathrottle.backends.django_cache import AsyncDjangoCache, SyncDjangoCache
from luathrottle.concurrency import AsyncConcurrencyLimiter, ConcurrencyLimiter
from luathrottle.django._identities import check_scope, identity_of
from luathrottle.django.cache_keys import BaseThrottleCacheKey, RemoteAddr

__all__ = ["AsyncConcurrencyThrottle", "BaseConcurrencyThrottle", "ConcurrencyThrottle"]

logger = logging.getLogger("luathrottle")

_BackendT = TypeVar("_BackendT", SyncBackend, AsyncBackend)
_LimiterT = TypeVar("_LimiterT", ConcurrencyLimiter, AsyncConcurrencyLimiter)


@functools.cache
def _default_sync_backend() -> SyncDjangoCache:
    return SyncDjangoCache()


@functools.cache
def _default_async_backend() -> AsyncDjangoCache:
    return AsyncDjangoCache()


class BaseConcurrencyThrottle(Generic[_BackendT, _LimiterT]):
    """What both twins share; see ``ConcurrencyThrottle``.

    Args:
        max_in_flight: requests of one client (cache key) a view serves at
            once, 1 to 100,000.
        lease: seconds a slot is held at most, unless the request ends
            sooner; a worker that dies frees its slot after this long, so
            make it longer than the view's slowest response.
        cache_key: who the slots are counted for; ``RemoteAddr()`` by
            default. A key that returns None skips the throttle.
        backend: where leases live: the Django cache ``"default"`` by
            default, else ``SyncRedis``/``AsyncRedis``, a Redis-backed
            Django cache or ``MemoryBackend``. A Django cache that is not
            Redis-backed cannot hold leases atomically and is refused.
        scope: share this throttle's slots with every concurrency throttle
            of the same scope, cache key name and limits, on any view; by
            default each view counts on its own.
        clock: not taken: leases expire on the store's clock, so that
            processes whose clocks disagree never end each other's leases. To
            move time in tests, give ``backend=MemoryBackend(clock=...)``.
        on_failure: when the store fails, ``"allow"`` the request (without
            a slot), ``"deny"`` it (503), or ``"raise"``; by default
            ``LUATHROTTLE["on_failure"]``.
        observers: callables given a ``luathrottle.DecisionEvent`` for each
            slot granted, refused or given back, besides the process's.
        shadow: take slots as ever, but let every request through: one the
            store refused runs holding nothing, and observers see
            ``Outcome.SHADOW_DENIED``. ``LUATHROTTLE["shadow"]`` shadows every
            throttle.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    _backend_type: ClassVar[type[SyncBackend] | type[AsyncBackend]]
    _default_backend: ClassVar[Callable[[], SyncBackend | AsyncBackend]]
    _limiter_type: ClassVar[type[ConcurrencyLimiter] | type[AsyncConcurrencyLimiter]]

    def __init__(
        self,
        max_in_flight: int,
        *,
        lease: float,
        cache_key: BaseThrottleCacheKey | None = None,
        backend: _BackendT | None = None,
        scope: str | None = None,
        clock: None = None,
        on_failure: OnFailure | None = None,
        observers: Iterable[Observer] | None = None,
        shadow: bool = False,
    ) -> None:
        self.max_in_flight = check_max_in_flight(max_in_flight)
        self.lease = check_lease(lease) / 1000
        self.cache_key = RemoteAddr() if cache_key is None else cache_key
        if not isinstance(self.cache_key, BaseThrottleCacheKey):
            raise TypeError(
                "cache_key must be a BaseThrottleCacheKey such as RemoteAddr(), "
                f"got {self.cache_key!r}"
            )
        self.backend: _BackendT = cast(
            _BackendT, type(self)._default_backend() if backend is None else backend
        )
        check_backend_kind(self.backend, self._backend_type, type(self).__name__)
        check_lease_store(self.backend.traits(), type(self).__name__)
        self.scope = check_scope(scope)
        refuse_clock(clock, type(self).__name__)
        self.on_failure = None if on_failure is None else check_on_failure(on_failure)
        self.observers = check_observers(observers)
        self.shadow = check_shadow(shadow)
        self._limiters: dict[str, _LimiterT] = {}

    def limiter(self, view_scope: str) -> _LimiterT:
        """The limiter of this throttle on the view ``view_scope``."""
        limiter = self._limiters.get(view_scope)
        if limiter is None:
            limiter = cast(
                _LimiterT,
                self._limiter_type(
                    self.max_in_flight,
                    lease=self.lease,
                    backend=self.backend,  # type: ignore[arg-type]
                    scope=f"{self.scope or view_scope}\x00{self.cache_key.name}",
                    observers=self.observers,
                    shadow=self.shadow,
                ),
            )
            self._limiters[view_scope] = limiter
        return limiter

    def identity(self, request: Any) -> str | None:
        """Who ``request`` holds a slot for; None skips this throttle.

        Raises:
            TypeError: the cache key returned something else than a str.
        """
        return identity_of(self.cache_key, request)

    def counter(self, view_scope: str) -> tuple[object, ...]:
        """What two throttles share slots by."""
        return (
            self.scope or view_scope,
            self.cache_key.name,
            "concurrency",
            self.max_in_flight,
            self.lease,
        )

    def check_backend(self) -> None:
        """Check the backend's configuration.

        Raises:
            ValueError: naming what is missing.
        """
        self.backend.check()

    def unsafe_reason(self) -> str | None:
        """Why the backend cannot keep this limit exact, or None if it can."""
        return self.backend.traits().unsafe_reason

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.max_in_flight}, lease={self.lease}, "
            f"cache_key={self.cache_key!r}, "
            f"backend={type(self.backend).__name__}(...))"
        )


class ConcurrencyThrottle(BaseConcurrencyThrottle[SyncBackend, ConcurrencyLimiter]):
    """At most ``max_in_flight`` requests of one client in a sync view at
    once; see ``BaseConcurrencyThrottle`` for the arguments."""

    _backend_type = SyncBackend
    _default_backend = _default_sync_backend
    _limiter_type = ConcurrencyLimiter


class AsyncConcurrencyThrottle(
    BaseConcurrencyThrottle[AsyncBackend, AsyncConcurrencyLimiter]
):
    """``ConcurrencyThrottle`` for async views."""

    _backend_type = AsyncBackend
    _default_backend = _default_async_backend
    _limiter_type = AsyncConcurrencyLimiter
