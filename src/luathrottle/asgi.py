"""Rate limiting for any ASGI app: Starlette, FastAPI, Litestar, Django.

::

    from luathrottle.asgi import RateLimitMiddleware

    app = RateLimitMiddleware(app, "100/minute")

Pure ASGI, with no framework imported: every HTTP request costs one script
call on the backend, but those of exempt clients, which cost none. A denied
request gets a 429 with the JSON body of the Django layer (or an RFC 9457
problem), ``Retry-After`` and the IETF draft's ``RateLimit`` fields;
admitted responses get the fields too. Lifespan
and websocket scopes pass through untouched.
"""

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from luathrottle import AsyncLimiter, BaseThrottleAlgorithm
from luathrottle._addresses import (
    DEFAULT_IPV6_PREFIX,
    Address,
    Clients,
    Network,
    check_own_key,
)
from luathrottle._answers import Answer, check_problem_json, headers_of, refusal
from luathrottle._counting import CountWhen, arefund_unless, check_count_when, spent
from luathrottle._events import Observer
from luathrottle._failures import OnFailure
from luathrottle._providers import DRAFT_PROVIDERS, check_providers
from luathrottle._waiting import check_max_wait
from luathrottle.backends import AsyncBackend
from luathrottle.headers import BaseResponseHeadersProvider
from luathrottle.rates import LimitSpec, parse_limits_named

__all__ = ["RateLimitMiddleware", "client_address"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


#: How ``client_address`` counts clients: every door's defaults.
_BY_ADDRESS = Clients()


def _host(scope: Scope) -> str | None:
    client = scope.get("client")
    if not client:
        return None
    host = client[0]
    return host if isinstance(host, str) and host else None


def client_address(scope: Scope) -> str | None:
    """The client's address from the ASGI scope, or None when the server
    gave none (a Unix socket, say). Counted as the Django cache keys count
    it: an IPv6 client as its /64 network (``2001:db8:1:2::/64``), an
    IPv4-mapped address as IPv4. Behind a proxy, configure the server
    (``uvicorn --proxy-headers``) so that this is the real client."""
    host = _host(scope)
    return None if host is None else _BY_ADDRESS.identity(host)


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower().encode("latin-1"), value.encode())
        for name, value in headers.items()
    ]


class _MiddlewareLimiter(AsyncLimiter):
    _door = "asgi"
    _owner = "luathrottle.asgi.RateLimitMiddleware"
    _twin = None


class RateLimitMiddleware:
    """Limits how often each client may call an ASGI app.

    Args:
        app: the ASGI app to guard.
        limits: every form ``Limiter`` takes: ``"100/minute"``,
            ``["10/second", "100/minute"]``, ``Limit(...)``, pairs.
        key: ``key(scope) -> str | None`` names who a request counts
            against; the client address by default (``client_address``).
            None skips the request.
        ipv6_prefix: the IPv6 network length that the default key counts
            as one client, from 1 to 128 (each address on its own); 64 by
            default. Not with a ``key`` of your own.
        exempt: IP addresses or CIDR networks, IPv4 or IPv6, whose clients
            are let through with no store call and no quota headers, whatever
            ``key`` says.
        backend: ``AsyncRedis(...)`` for limits shared by every worker;
            the process-wide embedded ``MemoryBackend`` by default.
        algorithm: ``SimpleRate()`` (default) or ``LeakyBucket()``.
        on_failure: when the store fails, ``"allow"`` (default) the request,
            ``"deny"`` it with a 503, or ``"raise"`` the ``BackendError``.
        response_headers: header providers, by default
            ``[RateLimitIETFDraft(current_draft=True), RetryAfter()]`` (the
            IETF draft's ``RateLimit-Policy`` and ``RateLimit``), on admitted
            and denied responses; ``[]`` for none.
        problem_json: answer a refusal with an RFC 9457
            ``application/problem+json`` body rather than the chapter's
            JSON; False by default.
        prefix: the start of every state key.
        clock: returns the time in seconds; by default the store's clock.
        cache_denials: True or a number of identities to answer remembered
            denials in this process without the store (see ``Limiter``);
            False (default) for none.
        observers: callables given a ``luathrottle.DecisionEvent`` for each
            decision, besides the process's observers.
        shadow: decide and count as ever, but let every request through, with
            no quota headers; observers see ``Outcome.SHADOW_DENIED`` (see
            ``Limiter``).
        near_limit: the fraction of a limit under which an admitted request
            is reported as ``Outcome.NEAR_LIMIT``; None (default) for never.
        penalty: seconds for which a client a limit denies is denied every
            request, counted from the denial (see ``Limiter``); None
            (default) for none.
        max_wait: hold a denied request up to this many seconds, until it
            fits, rather than answer 429 (as nginx's ``delay=``); a request
            that cannot fit in time gets its 429 at once. None (default):
            never hold.
        count_when: ``count_when(message) -> bool``, given the app's
            ``http.response.start`` message (its ``status`` and
            ``headers``): a request whose response does not count is
            refunded once it is sent, such as any but a 401 or 403 for a
            login path. None (default): every request counts.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    def __init__(
        self,
        app: ASGIApp,
        limits: LimitSpec | Iterable[LimitSpec],
        *,
        key: Callable[[Scope], str | None] | None = None,
        backend: AsyncBackend | None = None,
        algorithm: BaseThrottleAlgorithm | None = None,
        on_failure: OnFailure = "allow",
        response_headers: Iterable[BaseResponseHeadersProvider] | None = None,
        prefix: str = "lt",
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
        if not callable(app):
            raise TypeError(f"app must be an ASGI app, got {app!r}")
        if key is not None and not callable(key):
            raise TypeError(f"key must be a callable taking the scope, got {key!r}")
        self._clients = Clients(ipv6_prefix=ipv6_prefix, exempt=exempt)
        check_own_key(self._clients, key)
        self.app = app
        self.count_when = check_count_when(count_when, type(self).__name__)
        self.key = self._client_address if key is None else key
        self.limiter: AsyncLimiter = _MiddlewareLimiter(
            list(parse_limits_named(limits, "limits")),
            algorithm=algorithm,
            backend=backend,
            prefix=prefix,
            clock=clock,
            on_failure=on_failure,
            cache_denials=cache_denials,
            observers=observers,
            shadow=shadow,
            near_limit=near_limit,
            penalty=penalty,
        )
        self.response_headers = check_providers(response_headers, DRAFT_PROVIDERS)
        self.problem_json = check_problem_json(problem_json)
        self.max_wait = check_max_wait(max_wait, type(self).__name__)

    def _client_address(self, scope: Scope) -> str | None:
        host = _host(scope)
        return None if host is None else self._clients.identity(host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Decide HTTP requests, but those of exempt clients; pass every
        other scope through."""
        if scope["type"] != "http" or (
            self._clients.exempt and self._clients.exempts_host(_host(scope))
        ):
            await self.app(scope, receive, send)
            return
        identity = self.key(scope)
        if identity is None:
            await self.app(scope, receive, send)
            return
        if not isinstance(identity, str):
            raise TypeError(
                f"key returned {type(identity).__name__} {identity!r}; it must "
                "return a str or None"
            )
        if self.max_wait is None:
            decision = await self.limiter.hit(identity)
        else:
            decision = await self.limiter.wait(identity, timeout=self.max_wait)
        answer = refusal([(decision, self.response_headers)], self.problem_json)
        if answer is not None:
            await _send_answer(send, answer)
            return
        headers = headers_of([(self.response_headers, decision.limits)])
        count_when = self.count_when
        if not headers and count_when is None:
            await self.app(scope, receive, send)
            return
        extra = _raw(headers)
        hits = (
            []
            if count_when is None
            else spent(self.limiter._check(identity, "hit"), decision)
        )
        started: Message = {}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
        await arefund_unless(count_when, started, hits)

    def __repr__(self) -> str:
        return f"RateLimitMiddleware({self.app!r}, {self.limiter!r})"


async def _send_answer(send: Send, answer: Answer) -> None:
    raw = [
        (b"content-type", answer.content_type.encode()),
        (b"content-length", str(len(answer.body)).encode()),
        *_raw(answer.headers),
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": raw})
    await send({"type": "http.response.body", "body": answer.body})
