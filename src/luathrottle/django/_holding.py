"""Holding concurrency slots for the length of a view: the leases of a
request's ``ConcurrencyThrottle`` objects are taken one script call each
after the rate stages and auth, the handler runs, and they are given back
when the response is produced, or, for a streaming response, when its
content is exhausted or closed."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, ClassVar

from asgiref.sync import async_to_sync
from django.http import HttpResponse
from django.http.response import HttpResponseBase

from luathrottle._answers import lease_refusal
from luathrottle._failures import OnFailure
from luathrottle.concurrency import AsyncLease, Lease
from luathrottle.decision import Reason
from luathrottle.django._responses import respond
from luathrottle.django.concurrency import (
    AsyncConcurrencyThrottle,
    ConcurrencyThrottle,
)
from luathrottle.exceptions import BackendError

__all__ = [
    "aacquire_all",
    "acquire_all",
    "ahold_until_done",
    "arun_held",
    "hold_until_done",
    "run_held",
]

logger = logging.getLogger("luathrottle")


def _refused(lease: Lease | AsyncLease) -> HttpResponse | None:
    """The 429 of a full view (503 when the store failed and the policy
    denied); None when the lease lets the request on."""
    if lease.allowed:
        return None
    unavailable = lease.reason == Reason.STORE_UNAVAILABLE
    return respond(lease_refusal(lease.retry_after, unavailable))


def _release_all(leases: list[Lease]) -> None:
    for lease in leases:
        try:
            lease.release()
        except BackendError as error:
            # The lease runs out on its own; the response is already out.
            logger.warning(
                "luathrottle could not release a lease at %s: %s", lease.key, error
            )


async def _arelease_all(leases: list[AsyncLease]) -> None:
    cancelled: asyncio.CancelledError | None = None
    for lease in leases:
        try:
            await lease.release()
        except BackendError as error:
            logger.warning(
                "luathrottle could not release a lease at %s: %s", lease.key, error
            )
        except asyncio.CancelledError as error:
            # The rest are released all the same; the cancellation goes on
            # once they are.
            cancelled = error
    if cancelled is not None:
        raise cancelled


def _targets(
    held: Sequence[tuple[Any, str]], request: Any
) -> list[tuple[Any, Any, str]]:
    """Each throttle with its view's limiter and the request's identity, for
    the throttles whose cache key does not skip the request."""
    targets = []
    for throttle, view_scope in held:
        identity = throttle.identity(request)
        if identity is not None:
            targets.append((throttle, throttle.limiter(view_scope), identity))
    return targets


def acquire_all(
    held: Sequence[tuple[ConcurrencyThrottle, str]],
    request: Any,
    default: OnFailure,
    shadow: bool,
) -> tuple[list[Lease], HttpResponse | None]:
    """Take a slot of each throttle for ``request`` (``shadow``: in shadow
    mode, as ``LUATHROTTLE["shadow"]`` says); on a refusal, give back the
    slots taken and return the response to answer with, and on an error,
    give them back and raise it."""
    leases: list[Lease] = []
    try:
        for throttle, limiter, identity in _targets(held, request):
            policy = throttle.on_failure or default
            lease = limiter._acquire(identity, policy, request, shadow)
            refused = _refused(lease)
            if refused is not None:
                _release_all(leases)
                return [], refused
            leases.append(lease)
    except BaseException:
        _release_all(leases)
        raise
    return leases, None


async def aacquire_all(
    held: Sequence[tuple[AsyncConcurrencyThrottle, str]],
    request: Any,
    default: OnFailure,
    shadow: bool,
) -> tuple[list[AsyncLease], HttpResponse | None]:
    """``acquire_all`` for async views; cancelled, it gives back the slots
    taken before the cancellation goes on."""
    leases: list[AsyncLease] = []
    try:
        for throttle, limiter, identity in _targets(held, request):
            policy = throttle.on_failure or default
            lease = await limiter._acquire(identity, policy, request, shadow)
            refused = _refused(lease)
            if refused is not None:
                await _arelease_all(leases)
                return [], refused
            leases.append(lease)
    except BaseException:
        await _arelease_all(leases)
        raise
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
        _release_all(leases)


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
        await _arelease_all(leases)

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
    _release_all(leases)
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
    await _arelease_all(leases)
    return response


def run_held(
    held: Sequence[tuple[ConcurrencyThrottle, str]],
    request: Any,
    view: Callable[[], HttpResponseBase],
    default: OnFailure,
    shadow: bool,
) -> HttpResponseBase:
    """Run ``view`` holding a slot of each throttle."""
    leases, refused = acquire_all(held, request, default, shadow)
    if refused is not None:
        return refused
    try:
        response = view()
    except BaseException:
        _release_all(leases)
        raise
    return hold_until_done(response, leases)


async def arun_held(
    held: Sequence[tuple[AsyncConcurrencyThrottle, str]],
    request: Any,
    view: Callable[[], Awaitable[HttpResponseBase]],
    default: OnFailure,
    shadow: bool,
) -> HttpResponseBase:
    """``run_held`` for async views."""
    leases, refused = await aacquire_all(held, request, default, shadow)
    if refused is not None:
        return refused
    try:
        response = await view()
    except BaseException:
        await _arelease_all(leases)
        raise
    return await ahold_until_done(response, leases)
