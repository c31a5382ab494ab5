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
the policy denies) with the Django layer's body, ``Retry-After`` and the
IETF draft's ``RateLimit`` fields; admitted responses get the fields too.
Each route counts on its own unless throttles share a ``scope``.

``count_when=`` counts only some outcomes, such as a login route's
failures; a dependency never sees the response it guards, so the app
takes ``CountWhenMiddleware``, which sees what was sent::

    app.add_middleware(CountWhenMiddleware)

    failed = Throttle("5/minute", count_when=lambda r: r.status_code in (401, 403))

    @app.post("/login", dependencies=[Depends(failed)])
    async def login() -> dict[str, str]: ...
"""

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, TypeVar, cast

try:
    from fastapi import FastAPI, HTTPException, Request, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "luathrottle.fastapi needs FastAPI: pip install 'luathrottle[asgi]'"
    ) from exc

from luathrottle import AsyncLimiter, BaseThrottleAlgorithm, Decision, Limiter
from luathrottle._addresses import (
    DEFAULT_IPV6_PREFIX,
    Address,
    Clients,
    Network,
    check_own_key,
)
from luathrottle._answers import Answer, check_problem_json, headers_of, refusal
from luathrottle._counting import (
    CountWhen,
    Pending,
    arefund_unless,
    check_count_when,
    refund_unless,
    spent,
)
from luathrottle._events import Observer
from luathrottle._failures import OnFailure
from luathrottle._providers import DRAFT_PROVIDERS, check_providers
from luathrottle._waiting import check_max_wait
from luathrottle.headers import BaseResponseHeadersProvider
from luathrottle.rates import Limit, LimitSpec, parse_limits_named

__all__ = [
    "CountWhenMiddleware",
    "SyncThrottle",
    "Throttle",
    "add_problem_handler",
    "client_host",
]

_MAX_SCOPE = 200
#: Routes a throttle keeps a limiter for, forgotten all at once past it, so
#: that paths no route matched cannot grow them without end.
_REMEMBERED = 256


#: How ``client_host`` counts clients: every door's defaults.
_BY_ADDRESS = Clients()


def _host(request: Request) -> str | None:
    return request.client.host if request.client else None


def client_host(request: Request) -> str | None:
    """The client's address, or None when the server gave none. Counted as
    the Django cache keys count it: an IPv6 client as its /64 network
    (``2001:db8:1:2::/64``), an IPv4-mapped address as IPv4."""
    host = _host(request)
    return None if not host else _BY_ADDRESS.identity(host)


def _check_scope(scope: object) -> str | None:
    if scope is None:
        return None
    if not isinstance(scope, str) or not 0 < len(scope) <= _MAX_SCOPE:
        raise TypeError(
            f"scope must be a str of 1 to {_MAX_SCOPE} characters, got {scope!r}"
        )
    return scope


#: Where ``CountWhenMiddleware`` keeps the request's ``Pending``.
_PENDING = "luathrottle.count_when"


def _sent(message: Message) -> Response:
    """The response whose start ``message`` the app sent: its status and
    headers, without the body, which may still be streaming."""
    response = Response(status_code=message["status"])
    response.raw_headers = list(message.get("headers", ()))
    return response


class CountWhenMiddleware:
    """Refunds what throttles with a ``count_when`` spent on a request
    whose response does not count: ``app.add_middleware(CountWhenMiddleware)``.

    ``count_when`` is given a ``Response`` with the status and headers the
    app sent, whatever sent them (the route, an ``HTTPException``, an
    exception handler, a validation error), but not the body. A request a
    throttle refused, or whose app raised, is not refunded.
    """

    def __init__(self, app: ASGIApp) -> None:
        if not callable(app):
            raise TypeError(f"app must be an ASGI app, got {app!r}")
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, and settle its throttles once it is sent."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pending = scope[_PENDING] = Pending()
        started: Message = {}

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            await send(message)

        await self.app(scope, receive, watched)
        due = pending.due()
        if not due or not started:
            return
        response = _sent(started)
        for count_when, hits, is_async in due:
            if is_async:
                await arefund_unless(count_when, response, hits)
            else:
                # A sync store blocks: off the event loop, as FastAPI runs
                # SyncThrottle.
                await run_in_threadpool(refund_unless, count_when, response, hits)


class _Refused(HTTPException):
    """A throttle's refusal: FastAPI's own handler answers it with the
    ``detail`` body, and ``add_problem_handler``'s with the body the
    throttle chose."""

    def __init__(self, answer: Answer) -> None:
        detail = [{"msg": answer.message, "type": "ratelimit"}]
        super().__init__(answer.status, detail=detail, headers=answer.headers)
        self.answer = answer


async def _answered(request: Request, exc: Exception) -> Response:
    answer = cast(_Refused, exc).answer
    return Response(
        answer.body, answer.status, answer.headers, media_type=answer.content_type
    )


def add_problem_handler(app: FastAPI) -> None:
    """Let throttles made with ``problem_json=True`` answer with their RFC
    9457 body: FastAPI writes an ``HTTPException``'s body itself, as
    ``{"detail": ...}``, unless a handler of the exception's class does."""
    app.add_exception_handler(_Refused, _answered)


class _AsyncRouteLimiter(AsyncLimiter):
    _door = "fastapi"
    _owner = "luathrottle.fastapi.Throttle"
    _twin = "luathrottle.fastapi.SyncThrottle"


class _SyncRouteLimiter(Limiter):
    _door = "fastapi"
    _owner = "luathrottle.fastapi.SyncThrottle"
    _twin = "luathrottle.fastapi.Throttle"


_LimiterT = TypeVar("_LimiterT", Limiter, AsyncLimiter)


class _Base(Generic[_LimiterT]):
    _limiter_type: ClassVar[type[Limiter] | type[AsyncLimiter]]
    #: Whether a denied request may be held (``max_wait``).
    _holds: ClassVar[bool] = False

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
        observers: Iterable[Observer] | None = None,
        shadow: bool = False,
        near_limit: float | None = None,
        penalty: float | None = None,
        max_wait: float | None = None,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
        exempt: Iterable[str | Address | Network] = (),
        count_when: CountWhen | None = None,
        problem_json: bool = False,
    ) -> None:
        self.count_when = check_count_when(count_when, type(self).__name__)
        self.problem_json = check_problem_json(problem_json)
        if key is not None and not callable(key):
            raise TypeError(f"key must be a callable taking the request, got {key!r}")
        self._clients = Clients(ipv6_prefix=ipv6_prefix, exempt=exempt)
        check_own_key(self._clients, key)
        self.key = self._client_host if key is None else key
        self.response_headers = check_providers(response_headers, DRAFT_PROVIDERS)
        self.scope = _check_scope(scope)
        self.limits: tuple[Limit, ...] = parse_limits_named(limits, "limits")
        self.max_wait = check_max_wait(max_wait, type(self).__name__, self._holds)
        self._options: dict[str, Any] = {
            "algorithm": algorithm,
            "backend": backend,
            "clock": clock,
            "on_failure": on_failure,
            "cache_denials": cache_denials,
            "observers": observers,
            "shadow": shadow,
            "near_limit": near_limit,
            "penalty": penalty,
        }
        # Built now, so that a bad argument fails here and not at the first
        # request; the limiter checks that the backend is of its kind.
        self._limiters: dict[str, _LimiterT] = {}
        self.limiter_for(self.scope or "")

    def limiter_for(self, scope: str) -> _LimiterT:
        """The limiter that counts within ``scope``: this throttle's
        ``scope``, or by default the request's route."""
        found = self._limiters.get(scope)
        if found is not None:
            return found
        if len(self._limiters) >= _REMEMBERED:
            self._limiters.clear()
        limiter: _LimiterT = self._limiter_type(  # type: ignore[assignment]
            list(self.limits), scope=scope, **self._options
        )
        self._limiters[scope] = limiter
        return limiter

    def _client_host(self, request: Request) -> str | None:
        host = _host(request)
        return None if not host else self._clients.identity(host)

    def identity(self, request: Request) -> str | None:
        """What the request counts against, or None to skip it.

        Raises:
            TypeError: the key returned something else than a str.
        """
        identity = self.key(request)
        if identity is not None and not isinstance(identity, str):
            raise TypeError(
                f"key returned {type(identity).__name__} {identity!r}; it must "
                "return a str or None"
            )
        return identity

    def counting(self, request: Request) -> tuple[_LimiterT, str] | None:
        """The limiter of the request's scope (by default its route) and its
        identity, or None to skip it: the key skips it, or the client is
        exempt."""
        if self._clients.exempt and self._clients.exempts_host(_host(request)):
            return None
        identity = self.identity(request)
        if identity is None:
            return None
        return self.limiter_for(self.scope or _route(request)), identity

    def _pending(self, request: Request) -> Pending | None:
        """Where this request's refunds wait for its response; None when
        the app has no ``CountWhenMiddleware``.

        Raises:
            RuntimeError: this throttle has a ``count_when`` and the app no
                ``CountWhenMiddleware``, which alone sees the response.
        """
        pending: Pending | None = request.scope.get(_PENDING)
        if pending is None and self.count_when is not None:
            raise RuntimeError(
                f"{type(self).__name__}(count_when=...) needs the app to settle "
                "it once the response is sent: "
                "app.add_middleware(luathrottle.fastapi.CountWhenMiddleware)"
            )
        return pending

    def answer(self, decision: Decision, response: Response) -> Decision:
        """Put the headers on ``response``, or raise the refusal."""
        answer = refusal([(decision, self.response_headers)], self.problem_json)
        if answer is not None:
            raise _Refused(answer)
        response.headers.update(headers_of([(self.response_headers, decision.limits)]))
        return decision

    def _settle(
        self,
        decision: Decision,
        response: Response,
        pending: Pending | None,
        counted: tuple[_LimiterT, str],
    ) -> Decision:
        """``answer``, and leave what an admitted request spent for
        ``CountWhenMiddleware`` to refund unless its response counts."""
        try:
            self.answer(decision, response)
        except HTTPException:
            if pending is not None:
                pending.refused = True
            raise
        if pending is not None and self.count_when is not None:
            limiter, identity = counted
            hits = spent(limiter._check(identity, "hit"), decision)
            is_async = isinstance(limiter, AsyncLimiter)
            pending.hits.append((self.count_when, hits, is_async))
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


class Throttle(_Base[AsyncLimiter]):
    """A FastAPI dependency that limits a route: ``Depends(Throttle(...))``.

    Args:
        limits: every form ``Limiter`` takes: ``"5/minute"``,
            ``["1/second", "30/minute"]``, ``Limit(...)``, pairs.
        key: ``key(request) -> str | None``; the client address by default
            (``client_host``). None skips the request.
        ipv6_prefix: the IPv6 network length that the default key counts
            as one client, from 1 to 128 (each address on its own); 64 by
            default. Not with a ``key`` of your own.
        exempt: IP addresses or CIDR networks, IPv4 or IPv6, whose clients
            are let through with no store call and no quota headers, whatever
            ``key`` says.
        backend: ``AsyncRedis(...)`` or the embedded backend (default).
        algorithm: ``SimpleRate()`` (default) or ``LeakyBucket()``.
        on_failure: ``"allow"`` (default), ``"deny"`` (503) or ``"raise"``.
        response_headers: ``[RateLimitIETFDraft(current_draft=True),
            RetryAfter()]`` by default: the IETF draft's fields.
        scope: routes whose throttles share a scope share their counters;
            by default each route counts on its own.
        clock: returns the time in seconds; by default the store's clock.
        cache_denials: True or a number of identities to answer remembered
            denials in this process without the store (see ``Limiter``);
            False (default) for none.
        observers: callables given a ``luathrottle.DecisionEvent`` for each
            decision, besides the process's observers.
        shadow: decide and count as ever, but never answer 429 or 503, and
            send no quota headers; observers see ``Outcome.SHADOW_DENIED``
            (see ``Limiter``).
        near_limit: the fraction of a limit under which an admitted request
            is reported as ``Outcome.NEAR_LIMIT``; None (default) for never.
        penalty: seconds for which a client a limit denies is denied every
            request, counted from the denial (see ``Limiter``); None
            (default) for none.
        max_wait: hold a denied request up to this many seconds, until it
            fits, rather than answer 429; a request that cannot fit in time
            gets its 429 at once. None (default): never hold.
            ``SyncThrottle`` refuses it: it would hold a pool thread.
        count_when: ``count_when(response) -> bool``: a request whose
            response does not count is refunded once it is sent, such as
            any but a 401 or 403 for a login route; the app needs
            ``CountWhenMiddleware``. None (default): every request counts.
        problem_json: answer a refusal with an RFC 9457
            ``application/problem+json`` body, once the app has
            ``add_problem_handler(app)``; without it, FastAPI's own handler
            writes the default body. False by default.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    _limiter_type = _AsyncRouteLimiter
    _holds = True

    async def __call__(self, request: Request, response: Response) -> Decision | None:
        """Count the request; the decision, or None when it was skipped.

        Raises:
            HTTPException: 429 when denied, 503 when the store failed and
                the policy denies.
        """
        counting = self.counting(request)
        if counting is None:
            return None
        pending = self._pending(request)
        limiter, identity = counting
        if self.max_wait is None:
            decision = await limiter.hit(identity)
        else:
            decision = await limiter.wait(identity, timeout=self.max_wait)
        return self._settle(decision, response, pending, counting)


class SyncThrottle(_Base[Limiter]):
    """``Throttle`` on a sync backend (``SyncRedis``, ``SyncDjangoCache``);
    takes the same arguments."""

    _limiter_type = _SyncRouteLimiter

    def __call__(self, request: Request, response: Response) -> Decision | None:
        """Count the request, in FastAPI's thread pool."""
        counting = self.counting(request)
        if counting is None:
            return None
        pending = self._pending(request)
        limiter, identity = counting
        return self._settle(limiter.hit(identity), response, pending, counting)
