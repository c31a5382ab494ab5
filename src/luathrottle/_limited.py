"""A limiter around any function: ``Limiter.limit`` and ``AsyncLimiter.limit``.

Each call of the function, or each entry of the ``with`` block, is one hit
of the limiter, or with ``wait=True`` one wait (``Limiter.wait``). A refused
hit raises ``RateLimited`` before the function runs, so a refused call does
nothing and spends nothing. What a call counts against is ``key``: a str,
or a callable given the function's arguments; a key of None lets the call
through uncounted, as every door skips a request whose key is None.
"""

import functools
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from luathrottle._waiting import check_timeout
from luathrottle.decision import Decision
from luathrottle.exceptions import RateLimited


class _Hits(Protocol):
    """What a limit asks of its ``Limiter``."""

    def hit(self, key: str, cost: int = ...) -> Decision: ...

    def wait(
        self, key: str, cost: int = ..., *, timeout: float | None = ...
    ) -> Decision: ...


class _AsyncHits(Protocol):
    """What a limit asks of its ``AsyncLimiter``."""

    async def hit(self, key: str, cost: int = ...) -> Decision: ...

    async def wait(
        self, key: str, cost: int = ..., *, timeout: float | None = ...
    ) -> Decision: ...


__all__ = ["AsyncLimited", "AsyncLimits", "Limited", "Limits"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
Key = str | Callable[..., str | None]


def _checked(key: object, cost: object, wait: object) -> tuple[Key, int, bool]:
    """Validate ``key=``, a str or a callable of the function's arguments,
    ``cost=``, an int from 1, and ``wait=``.

    Raises:
        TypeError, ValueError: naming ``key``, ``cost`` or ``wait``.
    """
    if not isinstance(key, str) and not callable(key):
        raise TypeError(
            "key must be a str, or a callable given the function's arguments "
            f"that returns one, got {type(key).__name__} {key!r}"
        )
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise TypeError(f"cost must be an int, got {type(cost).__name__} {cost!r}")
    if cost < 1:
        raise ValueError(f"cost must be at least 1, got {cost!r}")
    if not isinstance(wait, bool):
        raise TypeError(f"wait must be True or False, got {wait!r}")
    return key, cost, wait


def _identity(key: Key, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    if isinstance(key, str):
        return key
    identity = key(*args, **kwargs)
    if identity is not None and not isinstance(identity, str):
        raise TypeError(
            f"key returned {type(identity).__name__} {identity!r}; it must "
            "return a str or None"
        )
    return identity


def _admitted(decision: Decision) -> Decision:
    """``decision``, or ``RateLimited`` when it refused the hit."""
    if not decision.allowed:
        raise RateLimited(decision)
    return decision


def _entered(key: Key) -> str:
    if not isinstance(key, str):
        raise TypeError(
            "a limit used as a context manager needs a str key; a callable "
            "key is given the arguments of a decorated function"
        )
    return key


class Limited:
    """``Limiter.limit(key=...)``: a decorator, or a context manager."""

    def __init__(
        self,
        limiter: _Hits,
        key: object,
        cost: object,
        wait: object,
        timeout: object,
    ) -> None:
        self._limiter = limiter
        self._key, self._cost, self._wait = _checked(key, cost, wait)
        self._timeout = check_timeout(timeout)

    def _hit(self, identity: str | None) -> Decision | None:
        if identity is None:
            return None
        if self._wait:
            waited = self._limiter.wait(identity, self._cost, timeout=self._timeout)
            return _admitted(waited)
        return _admitted(self._limiter.hit(identity, self._cost))

    def __call__(self, function: Callable[_P, _R]) -> Callable[_P, _R]:
        """Limit every call of ``function``, a ``def`` or an ``async def``
        (whose hit is decided before it is awaited).

        Raises:
            TypeError: ``function`` is an ``async def`` and the limit waits,
                which would block the event loop: an ``AsyncLimiter``
                waits in async code.
        """
        if inspect.iscoroutinefunction(function):
            if self._wait:
                raise TypeError(
                    f"{function!r} is async: a Limiter's wait would block the "
                    "event loop; use an AsyncLimiter's limit(wait=True)"
                )

            @functools.wraps(function)
            async def limited_async(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                self._hit(_identity(self._key, args, kwargs))
                return await function(*args, **kwargs)

            return limited_async  # type: ignore[return-value]

        @functools.wraps(function)
        def limited(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            self._hit(_identity(self._key, args, kwargs))
            return function(*args, **kwargs)

        return limited

    def __enter__(self) -> Decision:
        decision = self._hit(_entered(self._key))
        assert decision is not None  # a str key always counts
        return decision

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


class AsyncLimited:
    """``AsyncLimiter.limit(key=...)``: a decorator of ``async def``
    functions, or an ``async with`` context manager."""

    def __init__(
        self,
        limiter: _AsyncHits,
        key: object,
        cost: object,
        wait: object,
        timeout: object,
    ) -> None:
        self._limiter = limiter
        self._key, self._cost, self._wait = _checked(key, cost, wait)
        self._timeout = check_timeout(timeout)

    async def _hit(self, identity: str | None) -> Decision | None:
        if identity is None:
            return None
        if self._wait:
            waited = await self._limiter.wait(
                identity, self._cost, timeout=self._timeout
            )
            return _admitted(waited)
        return _admitted(await self._limiter.hit(identity, self._cost))

    def __call__(
        self, function: Callable[_P, Awaitable[_R]]
    ) -> Callable[_P, Awaitable[_R]]:
        """Limit every call of ``function``, an ``async def``.

        Raises:
            TypeError: ``function`` is not an ``async def``: a sync function
                takes ``Limiter.limit``.
        """
        if not inspect.iscoroutinefunction(function):
            raise TypeError(
                f"AsyncLimiter.limit decorates async functions, and {function!r} "
                "is not one: use a Limiter's limit for a sync function"
            )

        @functools.wraps(function)
        async def limited(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            await self._hit(_identity(self._key, args, kwargs))
            return await function(*args, **kwargs)

        return limited

    async def __aenter__(self) -> Decision:
        decision = await self._hit(_entered(self._key))
        assert decision is not None  # a str key always counts
        return decision

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


class Limits:
    """``Limiter``'s ``limit``."""

    def limit(
        self,
        *,
        key: str | Callable[..., str | None],
        cost: int = 1,
        wait: bool = False,
        timeout: float | None = None,
    ) -> Limited:
        """Limit a function, or a block: each call (or entry) is a hit.

        ``@limiter.limit(key="geocoder")`` guards a ``def`` or an ``async
        def``; ``key`` may be a callable given the function's arguments,
        returning the str to count against (None: not counted).
        ``with limiter.limit(key="geocoder"):`` guards a block, with a str
        key. A refused hit raises ``luathrottle.RateLimited`` before the
        function runs, spending nothing. ``wait=True`` waits for the hit
        (``Limiter.wait``) for at most ``timeout`` seconds first.

        Raises:
            TypeError, ValueError: naming ``key``, ``cost``, ``wait`` or
                ``timeout``.
        """
        return Limited(cast(_Hits, self), key, cost, wait, timeout)


class AsyncLimits:
    """``AsyncLimiter``'s ``limit``."""

    def limit(
        self,
        *,
        key: str | Callable[..., str | None],
        cost: int = 1,
        wait: bool = False,
        timeout: float | None = None,
    ) -> AsyncLimited:
        """``Limiter.limit`` for ``async def`` functions and ``async with``
        blocks; ``wait=True`` awaits ``AsyncLimiter.wait``."""
        return AsyncLimited(cast(_AsyncHits, self), key, cost, wait, timeout)
