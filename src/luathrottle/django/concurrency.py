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

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, ClassVar, Generic, TypeVar, cast

from asgiref.sync import async_to_sync
from django.http import HttpResponse
from django.http.response import HttpResponseBase

from luathrottle._bodies import TOO_MANY_REQUESTS_BODY, UNAVAILABLE_BODY
from luathrottle._clock import check_clock
from luathrottle._failures import OnFailure, check_on_failure
from luathrottle.backends.base import AsyncBackend, SyncBackend, check_backend_kind
from luathrottle.backends.django_cache import AsyncDjangoCache, SyncDjangoCache
from luathrottle.concurrency import (
    AsyncConcurrencyLimiter,
    AsyncLease,
    ConcurrencyLimiter,
    Lease,
    check_lease,
    check_lease_store,
    check_max_in_flight,
)
from luathrottle.django.cache_keys import BaseThrottleCacheKey, RemoteAddr
from luathrottle.django.throttles import _check_scope
from luathrottle.exceptions import BackendError
from luathrottle.headers import _seconds

__all__ = ["AsyncConcurrencyThrottle", "BaseConcurrencyThrottle", "ConcurrencyThrottle"]

logger = logging.getLogger("luathrottle")

_BackendT = TypeVar("_BackendT", SyncBackend, AsyncBackend)
_LimiterT = TypeVar("_LimiterT", ConcurrencyLimiter, AsyncConcurrencyLimiter)

#: The start of every lease key a throttle writes, as for rate throttles.
KEY_PREFIX = "lt"


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
        clock: returns the time in seconds; by default the store's clock.
        on_failure: when the store fails, ``"allow"`` the request (without
            a slot), ``"deny"`` it (503), or ``"raise"``; by default
            ``LUATHROTTLE["on_failure"]``.

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
        clock: Callable[[], float] | None = None,
        on_failure: OnFailure | None = None,
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
        self.scope = _check_scope(scope)
        self.clock = check_clock(clock)
        self.on_failure = None if on_failure is None else check_on_failure(on_failure)
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
                    clock=self.clock,
                    prefix=KEY_PREFIX,
                    scope=f"{self.scope or view_scope}\x00{self.cache_key.name}",
                ),
            )
            self._limiters[view_scope] = limiter
        return limiter

    def identity(self, request: Any) -> str | None:
        """Who ``request`` holds a slot for; None skips this throttle.

        Raises:
            TypeError: the cache key returned something else than a str.
        """
        identity = self.cache_key(request)
        if identity is not None and not isinstance(identity, str):
            raise TypeError(
                f"{self.cache_key!r} returned {type(identity).__name__}; cache "
                "keys must return a str or None"
            )
        return identity

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


def refusal(retry_after: float | None, unavailable: bool) -> HttpResponse:
    """The 429 (or, when the store failed and the policy denies, the 503)
    of a full view, with ``Retry-After``."""
    body, status = (
        (UNAVAILABLE_BODY, 503) if unavailable else (TOO_MANY_REQUESTS_BODY, 429)
    )
    response = HttpResponse(body, status=status, content_type="application/json")
    if retry_after is not None:
        response["Retry-After"] = _seconds(
            max(retry_after, 1.0) if unavailable else retry_after
        )
    return response


def _policy(
    throttle: BaseConcurrencyThrottle[Any, Any], default: OnFailure
) -> OnFailure:
    return throttle.on_failure or default


def _store_failed(
    throttle: BaseConcurrencyThrottle[Any, Any], error: BackendError, policy: OnFailure
) -> HttpResponse | None:
    logger.warning("luathrottle store failed for %r (%s): %s", throttle, policy, error)
    if policy == "raise":
        raise error
    if policy == "allow":
        return None
    return refusal(error.retry_after, unavailable=True)


def _release_quietly(lease: Lease) -> None:
    try:
        lease.release()
    except BackendError as error:
        # The lease runs out on its own; the response is already out.
        logger.warning(
            "luathrottle could not release a lease at %s: %s", lease.key, error
        )


async def _arelease_quietly(lease: AsyncLease) -> None:
    try:
        await lease.release()
    except BackendError as error:
        logger.warning(
            "luathrottle could not release a lease at %s: %s", lease.key, error
        )


def acquire_all(
    held: list[tuple[ConcurrencyThrottle, str]],
    request: Any,
    default: OnFailure,
) -> tuple[list[Lease], HttpResponse | None]:
    """Take a slot of each throttle for ``request``; on a refusal, give back
    the slots taken and return the response to answer with."""
    leases: list[Lease] = []
    for throttle, view_scope in held:
        identity = throttle.identity(request)
        if identity is None:
            continue
        limiter = throttle.limiter(view_scope)
        try:
            lease = limiter.acquire(identity)
        except BackendError as error:
            refused = _store_failed(throttle, error, _policy(throttle, default))
            if refused is None:
                continue
            for taken in leases:
                _release_quietly(taken)
            return [], refused
        if not lease.allowed:
            for taken in leases:
                _release_quietly(taken)
            return [], refusal(lease.retry_after, unavailable=False)
        leases.append(lease)
    return leases, None


async def aacquire_all(
    held: list[tuple[AsyncConcurrencyThrottle, str]],
    request: Any,
    default: OnFailure,
) -> tuple[list[AsyncLease], HttpResponse | None]:
    """``acquire_all`` for async views."""
    leases: list[AsyncLease] = []
    for throttle, view_scope in held:
        identity = throttle.identity(request)
        if identity is None:
            continue
        limiter = throttle.limiter(view_scope)
        try:
            lease = await limiter.acquire(identity)
        except BackendError as error:
            refused = _store_failed(throttle, error, _policy(throttle, default))
            if refused is None:
                continue
            for taken in leases:
                await _arelease_quietly(taken)
            return [], refused
        if not lease.allowed:
            for taken in leases:
                await _arelease_quietly(taken)
            return [], refusal(lease.retry_after, unavailable=False)
        leases.append(lease)
    return leases, None


class _ReleasingIterator:
    """A streaming response's content that releases the leases when it is
    exhausted, fails, or is closed (by the server, when the client leaves)."""

    def __init__(self, content: Iterator[bytes], leases: list[Lease]) -> None:
        self._content = content
        self._leases = leases

    def __iter__(self) -> "_ReleasingIterator":
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._content)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        leases, self._leases = self._leases, []
        for lease in leases:
            _release_quietly(lease)


class _AsyncReleasingIterator:
    """``_ReleasingIterator`` for async content and leases."""

    #: Releases scheduled from ``close()`` on a running loop, kept until done.
    _pending: ClassVar[set["asyncio.Task[None]"]] = set()

    def __init__(
        self, content: AsyncIterator[bytes] | Iterator[bytes], leases: list[AsyncLease]
    ) -> None:
        self._content = content
        self._leases = leases

    def __aiter__(self) -> "_AsyncReleasingIterator":
        return self

    async def __anext__(self) -> bytes:
        try:
            if isinstance(self._content, AsyncIterator):
                return await anext(self._content)
            try:
                return next(self._content)
            except StopIteration:
                raise StopAsyncIteration from None
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        leases, self._leases = self._leases, []
        for lease in leases:
            await _arelease_quietly(lease)

    def close(self) -> None:
        """Release the leases; Django's ASGI handler calls this from a
        thread, tests and other servers may call it on the loop."""
        if not self._leases:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            async_to_sync(self.aclose)()
            return
        task = loop.create_task(self.aclose())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


def hold_until_done(
    response: HttpResponseBase, leases: list[Lease]
) -> HttpResponseBase:
    """Release ``leases`` now, or when a streaming response's content ends."""
    if not leases:
        return response
    if getattr(response, "streaming", False):
        content = response.streaming_content  # type: ignore[attr-defined]
        if getattr(response, "is_async", False):
            # Async content from a sync view is Django's to iterate; the
            # leases go when Django closes the response after sending it.
            closers = response._resource_closers  # type: ignore[attr-defined]
            closers.append(_ReleasingIterator(iter(()), leases).close)
        else:
            response.streaming_content = _ReleasingIterator(  # type: ignore[attr-defined]
                iter(content), leases
            )
        return response
    for lease in leases:
        _release_quietly(lease)
    return response


async def ahold_until_done(
    response: HttpResponseBase, leases: list[AsyncLease]
) -> HttpResponseBase:
    """``hold_until_done`` for async views."""
    if not leases:
        return response
    if getattr(response, "streaming", False):
        content = response.streaming_content  # type: ignore[attr-defined]
        response.streaming_content = _AsyncReleasingIterator(content, leases)  # type: ignore[attr-defined]
        return response
    for lease in leases:
        await _arelease_quietly(lease)
    return response


def run_held(
    held: list[tuple[ConcurrencyThrottle, str]],
    request: Any,
    view: Callable[[], HttpResponseBase],
    default: OnFailure,
) -> HttpResponseBase:
    """Run ``view`` holding a slot of each throttle."""
    leases, refused = acquire_all(held, request, default)
    if refused is not None:
        return refused
    try:
        response = view()
    except BaseException:
        for lease in leases:
            _release_quietly(lease)
        raise
    return hold_until_done(response, leases)


async def arun_held(
    held: list[tuple[AsyncConcurrencyThrottle, str]],
    request: Any,
    view: Callable[[], Awaitable[HttpResponseBase]],
    default: OnFailure,
) -> HttpResponseBase:
    """``run_held`` for async views."""
    leases, refused = await aacquire_all(held, request, default)
    if refused is not None:
        return refused
    try:
        response = await view()
    except BaseException:
        for lease in leases:
            await _arelease_quietly(lease)
        raise
    return await ahold_until_done(response, leases)
