"""Per-route limits for FastAPI, as a dependency.

::

    from fastapi import Depends, FastAPI
    from luathrottle.fastapi import Throttle

    app = FastAPI()

    @app.get("/search", dependencies=[Depends(Throttle("5/minute"))])
    async def search() -> dict[str, str]: ...

``Throttle`` is async, on ``AsyncRedis`` or the embedded backend;
``SyncThrottle`` takes a sync backend (``SyncRedis``, a Django cache) and
FastAPI runs it in its thread pool. Either guards ``def`` and ``async def``
routes alike. A denied request gets a 429 (503 when the store failed and
the policy denies) with the Django layer's body and headers; admitted
responses get the headers too. Each route counts on its own unless
throttles share a ``scope``.
"""

from collections.abc import Callable, Iterable
from typing import Any

try:
    from fastapi import HTTPException, Request, Response
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "luathrottle.fastapi needs FastAPI: pip install 'luathrottle[asgi]'"
    ) from exc

from luathrottle import AsyncLimiter, BaseThrottleAlgorithm, Decision, Limiter, Reason
from luathrottle._failures import OnFailure
from luathrottle._providers import check_providers
from luathrottle.headers import BaseResponseHeadersProvider, collect_headers
from luathrottle.rates import LimitSpec, parse_limits_named

__all__ = ["SyncThrottle", "Throttle", "client_host"]

_TOO_MANY = [{"msg": "Too many requests", "type": "ratelimit"}]
_UNAVAILABLE = [{"msg": "Rate limiting is unavailable", "type": "ratelimit"}]
_MAX_SCOPE = 200


def client_host(request: Request) -> str | None:
    """The client's address, or None when the server gave none."""
    return request.client.host if request.client else None


def _check_scope(scope: object) -> str | None:
    if scope is None:
        return None
    if not isinstance(scope, str) or not 0 < len(scope) <= _MAX_SCOPE:
        raise TypeError(
            f"scope must be a str of 1 to {_MAX_SCOPE} characters, got {scope!r}"
        )
    return scope


class _Base:
    _limiter_type: type[Limiter] | type[AsyncLimiter]

    def __init__(
        self,
        limits: LimitSpec | Iterable[LimitSpec],
        *,
        key: Callable[[Request], str | None] | None = None,
        backend: Any = None,
        algorithm: BaseThrottleAlgorithm | None = None,
        on_failure: OnFailure = "allow",
        response_headers: Iterable[BaseResponseHeadersProvider] | None = None,
        scope: str | None = None,
        clock: Callable[[], float] | None = None,
        cache_denials: bool | int = False,
    ) -> None:
        if key is not None and not callable(key):
            raise TypeError(f"key must be a callable taking the request, got {key!r}")
        self.key = client_host if key is None else key
        self.response_headers = check_providers(response_headers)
        self.scope = _check_scope(scope)
        # The limiter checks that the backend is of its kind.
        self.limiter = self._limiter_type(
            list(parse_limits_named(limits, "limits")),
            algorithm=algorithm,
            backend=backend,
            clock=clock,
            on_failure=on_failure,
            cache_denials=cache_denials,
        )

    def identity(self, request: Request) -> str | None:
        """What the request counts against within this throttle's scope (by
        default its route), or None to skip it."""
        identity = self.key(request)
        if identity is None:
            return None
        if not isinstance(identity, str):
            raise TypeError(
                f"key returned {type(identity).__name__} {identity!r}; it must "
                "return a str or None"
            )
        return f"{self.scope or _route(request)}\x00{identity}"

    def answer(self, decision: Decision, response: Response) -> Decision:
        """Put the headers on ``response``, or raise the denial."""
        headers = collect_headers(self.response_headers, decision.limits)
        if not decision.allowed:
            if decision.reason == Reason.STORE_UNAVAILABLE:
                raise HTTPException(503, detail=_UNAVAILABLE, headers=headers)
            raise HTTPException(429, detail=_TOO_MANY, headers=headers)
        response.headers.update(headers)
        return decision


def _route(request: Request) -> str:
    # Starlette's router puts the matched route in the scope: its path
    # template and methods name the route the same way in every worker.
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        methods = ",".join(sorted(getattr(route, "methods", None) or ()))
        return f"{methods} {path}"
    return request.url.path


class Throttle(_Base):
    """A FastAPI dependency that limits a route: ``Depends(Throttle(...))``.

    Args:
        limits: every form ``Limiter`` takes: ``"5/minute"``,
            ``["1/second", "30/minute"]``, ``Limit(...)``, pairs.
        key: ``key(request) -> str | None``; the client address by default.
            None skips the request.
        backend: ``AsyncRedis(...)`` or the embedded backend (default).
        algorithm: ``SimpleRate()`` (default) or ``LeakyBucket()``.
        on_failure: ``"allow"`` (default), ``"deny"`` (503) or ``"raise"``.
        response_headers: ``[XRateLimit(), RetryAfter()]`` by default.
        scope: routes whose throttles share a scope share their counters;
            by default each route counts on its own.
        clock: returns the time in seconds; by default the store's clock.
        cache_denials: True or a number of identities to answer remembered
            denials in this process without the store (see ``Limiter``);
            False (default) for none.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    _limiter_type = AsyncLimiter
    limiter: AsyncLimiter

    async def __call__(self, request: Request, response: Response) -> Decision | None:
        """Count the request; the decision, or None when it was skipped.

        Raises:
            HTTPException: 429 when denied, 503 when the store failed and
                the policy denies.
        """
        identity = self.identity(request)
        if identity is None:
            return None
        return self.answer(await self.limiter.hit(identity), response)


class SyncThrottle(_Base):
    """``Throttle`` on a sync backend (``SyncRedis``, ``SyncDjangoCache``);
    takes the same arguments."""

    _limiter_type = Limiter
    limiter: Limiter

    def __call__(self, request: Request, response: Response) -> Decision | None:
        """Count the request, in FastAPI's thread pool."""
        identity = self.identity(request)
        if identity is None:
            return None
        return self.answer(self.limiter.hit(identity), response)
