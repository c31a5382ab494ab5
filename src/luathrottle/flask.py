"""Rate limits for Flask: the ``Throttle`` extension.

::

    from flask import Blueprint, Flask
    from luathrottle.flask import Throttle

    app = Flask(__name__)
    throttle = Throttle(app, default_limits="200/hour")

    @app.get("/search")
    @throttle.limit("5/minute")
    def search(): ...

    @app.get("/health")
    @throttle.exempt
    def health(): ...

    api = Blueprint("api", __name__)
    throttle.limit("100/minute")(api)  # every route of the blueprint

A route's own limits win over its blueprint's, which win over the app's
defaults; each route counts on its own unless its limits share a
``scope``. Every limit of a request is decided in one script call per
store, all or nothing. A denied request gets the answer of every other
door: 429 (503 when the store failed and the policy denies) with
``Retry-After``, the IETF draft's ``RateLimit`` fields and the JSON body
(or an RFC 9457 problem); admitted responses get the fields. ``def`` and
``async def`` views alike.

Settings come from ``app.config`` when the constructor leaves them out:
``LUATHROTTLE_DEFAULT_LIMITS`` (a limit string, ``"200/day;50/hour"``, or a
list), ``LUATHROTTLE_STORAGE_URL`` (a ``redis://`` URL; the embedded store
by default), ``LUATHROTTLE_ON_FAILURE``, ``LUATHROTTLE_SHADOW`` and
``LUATHROTTLE_ENABLED`` (False: nothing is counted, as Flask-Limiter's
``RATELIMIT_ENABLED``).
"""

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

try:
    from flask import Blueprint, Flask, Response, current_app, g, request
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "luathrottle.flask needs Flask: pip install 'luathrottle[flask]'"
    ) from exc

from luathrottle import BaseThrottleAlgorithm, Limiter, SimpleRate
from luathrottle._addresses import (
    DEFAULT_IPV6_PREFIX,
    Address,
    Clients,
    Network,
    check_own_key,
)
from luathrottle._answers import check_problem_json, headers_of, refusal
from luathrottle._checks import Check
from luathrottle._counting import CountWhen, check_count_when, refund_unless, spent
from luathrottle._engine import decisions as decide_all
from luathrottle._events import Observer, check_shadow
from luathrottle._failures import OnFailure, check_on_failure
from luathrottle._keys import check_apart
from luathrottle._providers import DRAFT_PROVIDERS, check_providers
from luathrottle.backends.base import SyncBackend, check_backend_kind
from luathrottle.backends.redis import SyncRedis
from luathrottle.headers import BaseResponseHeadersProvider
from luathrottle.rates import (
    Limit,
    LimitSpec,
    check_penalty,
    parse_limits_named,
    penalised,
)

__all__ = ["Throttle", "remote_address"]

_Guarded = TypeVar("_Guarded", bound=Callable[..., Any] | Blueprint)
_Key = Callable[[], str | None]
_Providers = Sequence[BaseResponseHeadersProvider]
_EXTENSION = "luathrottle"


#: How ``remote_address`` counts clients: every door's defaults.
_BY_ADDRESS = Clients()


def remote_address() -> str | None:
    """The client's address, ``request.remote_addr``, counted as the
    Django cache keys count it: an IPv6 client as its /64 network
    (``2001:db8:1:2::/64``). Behind a proxy, wrap the app in Werkzeug's
    ``ProxyFix`` so that this is the real client."""
    host = request.remote_addr
    return _BY_ADDRESS.identity(host) if host else None


class _Limits:
    """One ``Throttle.limit``: limits and how to count them."""

    def __init__(
        self,
        limits: LimitSpec | Iterable[LimitSpec],
        key: _Key | None,
        scope: str | None,
        algorithm: BaseThrottleAlgorithm | None,
        shadow: bool | None,
        response_headers: Iterable[BaseResponseHeadersProvider] | None,
        count_when: CountWhen | None = None,
        penalty: float | None = None,
    ) -> None:
        self.limits: tuple[Limit, ...] = penalised(
            parse_limits_named(limits, "limits"), check_penalty(penalty)
        )
        self.count_when = check_count_when(
            count_when, "luathrottle.flask.Throttle.limit"
        )
        if key is not None and not callable(key):
            raise TypeError(f"key must be a callable of no arguments, got {key!r}")
        if scope is not None and (not isinstance(scope, str) or not scope):
            raise TypeError(f"scope must be a non-empty str, got {scope!r}")
        if algorithm is not None and not isinstance(algorithm, BaseThrottleAlgorithm):
            raise TypeError(
                f"algorithm must be a luathrottle algorithm, got {algorithm!r}"
            )
        # What a limiter of these limits refuses, refused at import: the
        # limiters are made at each route's first request.
        check_apart(self.limits, "limits")
        (algorithm or SimpleRate()).check_limits(self.limits)
        self.key = key
        self.scope = scope
        self.algorithm = algorithm
        self.shadow = None if shadow is None else check_shadow(shadow)
        self.providers: _Providers | None = (
            None if response_headers is None else check_providers(response_headers)
        )


class _AppState:
    """A ``Throttle``'s settings per app, and its limiters, made lazily."""

    def __init__(
        self,
        backend: SyncBackend | None,
        defaults: _Limits | None,
        on_failure: OnFailure,
        shadow: bool,
        enabled: bool,
    ) -> None:
        self.backend = backend
        self.defaults = defaults
        self.on_failure = on_failure
        self.shadow = shadow
        self.enabled = enabled
        self.limiters: dict[tuple[int, str], Limiter] = {}
        self.lock = threading.Lock()


class _FlaskLimiter(Limiter):
    _door = "flask"


class Throttle:
    """Rate limits for a Flask app: a Flask extension.

    Args:
        app: the app; or call ``init_app`` later, for each app.
        backend: any sync backend (``SyncRedis``, ``SyncDjangoCache``, the
            embedded ``MemoryBackend``); by default ``app.config``'s
            ``LUATHROTTLE_STORAGE_URL``, else the embedded store.
        key: a callable of no arguments that returns what a request counts
            against (it reads ``flask.request``), or None to skip the
            request; ``remote_address`` by default.
        default_limits: the limits of every route without limits of its own
            or of its blueprint; ``LUATHROTTLE_DEFAULT_LIMITS`` by default,
            else none.
        on_failure: ``"allow"``, ``"deny"`` (503) or ``"raise"``;
            ``LUATHROTTLE_ON_FAILURE`` by default, else ``"allow"``.
        shadow: decide and count as ever, but admit every request and send
            no quota headers (see ``Limiter``); ``LUATHROTTLE_SHADOW`` by
            default.
        response_headers: ``[RateLimitIETFDraft(current_draft=True),
            RetryAfter()]`` by default: the IETF draft's fields.
        problem_json: answer a refusal with an RFC 9457
            ``application/problem+json`` body; False by default.
        observers: callables given a ``luathrottle.DecisionEvent`` for each
            decision, besides the process's observers.
        ipv6_prefix: the IPv6 network length that the default key counts
            as one client, from 1 to 128 (each address on its own); 64 by
            default. Not with a ``key`` of your own.
        exempt: IP addresses or CIDR networks, IPv4 or IPv6, whose clients
            (``request.remote_addr``) are let through with no store call and
            no quota headers, whatever the key.

    Raises:
        TypeError, ValueError: a bad argument or setting, named in the
            message.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        backend: SyncBackend | None = None,
        key: _Key | None = None,
        default_limits: LimitSpec | Iterable[LimitSpec] | None = None,
        on_failure: OnFailure | None = None,
        shadow: bool | None = None,
        response_headers: Iterable[BaseResponseHeadersProvider] | None = None,
        observers: Iterable[Observer] | None = None,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
        exempt: Iterable[str | Address | Network] = (),
        problem_json: bool = False,
    ) -> None:
        if key is not None and not callable(key):
            raise TypeError(f"key must be a callable of no arguments, got {key!r}")
        if backend is not None:
            check_backend_kind(backend, SyncBackend, "luathrottle.flask.Throttle")
        self._clients = Clients(ipv6_prefix=ipv6_prefix, exempt=exempt)
        check_own_key(self._clients, key)
        self._backend = backend
        self._key: _Key = self._remote_address if key is None else key
        self._defaults = None if default_limits is None else _default(default_limits)
        self._on_failure = None if on_failure is None else check_on_failure(on_failure)
        self._shadow = None if shadow is None else check_shadow(shadow)
        self._providers = check_providers(response_headers, DRAFT_PROVIDERS)
        self._problem_json = check_problem_json(problem_json)
        self._observers = observers
        #: The limits and exemptions of view functions and blueprints.
        self._routes: dict[object, list[_Limits]] = {}
        self._blueprints: dict[object, list[_Limits]] = {}
        self._exempt: set[object] = set()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Throttle ``app``'s requests, with its ``LUATHROTTLE_*`` settings.

        Raises:
            TypeError, ValueError: a setting is wrong, named in the message.
        """
        config = app.config
        backend = self._backend
        url = config.get("LUATHROTTLE_STORAGE_URL")
        if backend is None and url is not None:
            if not isinstance(url, str):
                raise TypeError(f"LUATHROTTLE_STORAGE_URL must be a str, got {url!r}")
            backend = SyncRedis.from_url(url)
        defaults = self._defaults
        if defaults is None and config.get("LUATHROTTLE_DEFAULT_LIMITS"):
            defaults = _setting(
                "LUATHROTTLE_DEFAULT_LIMITS",
                _default,
                config["LUATHROTTLE_DEFAULT_LIMITS"],
            )
        if self._on_failure is not None:
            on_failure: OnFailure = self._on_failure
        else:
            on_failure = _setting(
                "LUATHROTTLE_ON_FAILURE",
                check_on_failure,
                config.get("LUATHROTTLE_ON_FAILURE", "allow"),
            )
        shadow = self._shadow
        if shadow is None:
            shadow = _setting(
                "LUATHROTTLE_SHADOW",
                check_shadow,
                config.get("LUATHROTTLE_SHADOW", False),
            )
        enabled = config.get("LUATHROTTLE_ENABLED", True)
        if not isinstance(enabled, bool):
            raise TypeError(
                f"LUATHROTTLE_ENABLED must be True or False, got {enabled!r}"
            )
        app.extensions[_EXTENSION] = _AppState(
            backend, defaults, on_failure, shadow, enabled
        )
        app.before_request(self._before)
        app.after_request(self._after)

    def limit(
        self,
        limits: LimitSpec | Iterable[LimitSpec],
        *,
        key: _Key | None = None,
        scope: str | None = None,
        algorithm: BaseThrottleAlgorithm | None = None,
        shadow: bool | None = None,
        response_headers: Iterable[BaseResponseHeadersProvider] | None = None,
        count_when: CountWhen | None = None,
        penalty: float | None = None,
    ) -> Callable[[_Guarded], _Guarded]:
        """Limit a view, or every route of a blueprint: a decorator.

        Args:
            limits: every form ``Limiter`` takes: ``"5/minute"``,
                ``["1/second", "30/minute"]``, ``Limit(...)``, pairs.
            key: as ``Throttle``'s, for these limits; the throttle's by
                default.
            scope: routes whose limits share a scope share their counts; by
                default each route counts on its own.
            algorithm: ``SimpleRate()`` by default.
            shadow: these limits in shadow mode; the throttle's by default.
            response_headers: the throttle's by default.
            count_when: ``count_when(response) -> bool``: a request whose
                response does not count is refunded after the view, such as
                any but a 401 or 403 for a login view; None (default):
                every request counts.
            penalty: seconds for which a client one of these limits denied
                is denied every request (``Limit(penalty=...)``); None
                (default) for none.

        Raises:
            TypeError, ValueError: a bad argument, named in the message.
        """
        limited = _Limits(
            limits, key, scope, algorithm, shadow, response_headers, count_when, penalty
        )

        def decorate(guarded: _Guarded) -> _Guarded:
            if isinstance(guarded, Blueprint):
                self._blueprints.setdefault(guarded, []).append(limited)
            else:
                self._routes.setdefault(guarded, []).append(limited)
            return guarded

        return decorate

    def exempt(self, guarded: _Guarded) -> _Guarded:
        """A decorator: exempt a view, or a blueprint's routes, from limits."""
        self._exempt.add(guarded)
        return guarded

    def _remote_address(self) -> str | None:
        host = request.remote_addr
        return self._clients.identity(host) if host else None

    def _before(self) -> Response | None:
        state: _AppState = current_app.extensions[_EXTENSION]
        chosen = self._chosen(state)
        if not chosen or self._clients.exempts_host(request.remote_addr):
            return None
        checks: list[tuple[Check, _Providers, _Limits]] = []
        for limited in chosen:
            identity = (limited.key or self._key)()
            if identity is None:
                continue
            if not isinstance(identity, str):
                raise TypeError(
                    f"key returned {type(identity).__name__} {identity!r}; it "
                    "must return a str or None"
                )
            limiter = self._limiter(state, limited)
            check = limiter._check(identity, "hit")._replace(request=request)
            checks.append((check, limited.providers or self._providers, limited))
        decisions = decide_all([check for check, _, _ in checks])
        decided = [
            (decision, providers)
            for decision, (_, providers, _) in zip(decisions, checks, strict=True)
        ]
        answer = refusal(decided, self._problem_json)
        if answer is not None:
            return Response(
                answer.body,
                status=answer.status,
                headers=answer.headers,
                content_type=answer.content_type,
            )
        g._luathrottle_decided = decided
        g._luathrottle_spent = [
            (limited.count_when, spent(check, decision))
            for decision, (check, _, limited) in zip(decisions, checks, strict=True)
            if limited.count_when is not None
        ]
        return None

    def _after(self, response: Response) -> Response:
        decided = g.pop("_luathrottle_decided", None)
        if decided:
            headers = headers_of(
                [(providers, decision.limits) for decision, providers in decided]
            )
            for name, value in headers.items():
                response.headers.setdefault(name, value)
        for count_when, hits in g.pop("_luathrottle_spent", ()):
            refund_unless(count_when, response, hits)
        return response

    def _chosen(self, state: _AppState) -> list[_Limits]:
        """The limits of this request's route: its own, else its nearest
        blueprint's, else the app's defaults; none when it is exempt."""
        if not state.enabled or request.endpoint is None:
            return []
        view = current_app.view_functions.get(request.endpoint)
        if view is None or view in self._exempt:
            return []
        # Innermost first; a nested blueprint is registered by its dotted
        # name, under which the app keeps it.
        blueprints = [current_app.blueprints.get(name) for name in request.blueprints]
        if any(blueprint in self._exempt for blueprint in blueprints):
            return []
        own = self._routes.get(view)
        if own:
            return own
        for blueprint in blueprints:
            found = self._blueprints.get(blueprint)
            if found:
                return found
        return [] if state.defaults is None else [state.defaults]

    def _limiter(self, state: _AppState, limited: _Limits) -> Limiter:
        scope = limited.scope or f"flask:{request.endpoint}"
        made = state.limiters.get((id(limited), scope))
        if made is not None:
            return made
        with state.lock:
            made = state.limiters.get((id(limited), scope))
            if made is None:
                shadow = state.shadow if limited.shadow is None else limited.shadow
                made = _FlaskLimiter(
                    list(limited.limits),
                    backend=state.backend,
                    algorithm=limited.algorithm,
                    on_failure=state.on_failure,
                    scope=scope,
                    observers=self._observers,
                    shadow=shadow,
                )
                state.limiters[(id(limited), scope)] = made
        return made


def _default(limits: Any) -> _Limits:
    """Default limits, given as ``limits=`` is, or as Flask-Limiter's
    strings are: ``"200/day;50/hour"``."""
    if isinstance(limits, str) and ";" in limits:
        limits = [part.strip() for part in limits.split(";") if part.strip()]
    return _Limits(limits, None, None, None, None, None)


_T = TypeVar("_T")


def _setting(name: str, check: Callable[[Any], _T], value: object) -> _T:
    """``check(value)``, its error naming the setting ``name``."""
    try:
        return check(value)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from exc
