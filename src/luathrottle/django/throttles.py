"""Throttles: one limit, a cache key, a backend and response headers.

A throttle is configuration, and does no I/O: ``keyed()`` turns a request's
identity and a view's scope into the check that the engine
(``luathrottle._engine``) decides, with every other check of the request's
stage, in as few script calls as the store allows. A throttle knows its
backend only through the backend contract: it never asks what class a
backend is.
"""

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar, cast

from luathrottle._answers import refusal_spec
from luathrottle._checks import (
    NO_SETTINGS,
    Batching,
    Check,
    Counting,
    Defaults,
    batching,
    check_counting,
)
from luathrottle._clock import check_clock
from luathrottle._denials import DenialCache, denial_cache
from luathrottle._events import (
    Observer,
    check_near_limit,
    check_observers,
    check_shadow,
)
from luathrottle._failures import OnFailure, check_on_failure
from luathrottle._keys import KEY_PREFIX, identity_digest, key_frame, window_counter
from luathrottle._providers import check_providers
from luathrottle._waiting import check_max_wait
from luathrottle.algorithms import BaseThrottleAlgorithm, SimpleRate
from luathrottle.backends.base import AsyncBackend, SyncBackend, check_backend_kind
from luathrottle.backends.django_cache import AsyncDjangoCache, SyncDjangoCache
from luathrottle.django._identities import check_scope, identity_of
from luathrottle.django._outcomes import ThrottlingReport
from luathrottle.django.cache_keys import BaseThrottleCacheKey, RemoteAddr
from luathrottle.headers import BaseResponseHeadersProvider
from luathrottle.rates import Limit, LimitSpec, check_penalty, parse_limit, renamed
from luathrottle.scripts import Script

__all__ = ["AsyncThrottle", "BaseThrottle", "SyncThrottle", "ThrottlingReport"]

_BackendT = TypeVar("_BackendT", SyncBackend, AsyncBackend)

#: What a rate callable returns: a limit in any form a throttle takes, or
#: None to exempt the request.
RateResult: TypeAlias = LimitSpec | None
#: A throttle's rate chosen per request: ``rate(request)``, awaitable for
#: ``AsyncThrottle``.
RateCallable: TypeAlias = Callable[[Any], RateResult | Awaitable[RateResult]]
#: Limits a rate callable returned, and key frames built, are remembered up
#: to this many per throttle, so that a callable returning limits made from
#: request data cannot grow them without end.
_REMEMBERED = 256

# Clients' reprs can run to a page; messages name the backend's type instead.
_MAX_BACKEND_REPR = 60


#: Builds a check in C: NamedTuple's own __new__ is a Python function, and a
#: throttle builds one for every request.
_new_check = functools.partial(tuple.__new__, Check)


#: The default cache key, shared: a stage reads it once per request.
_REMOTE_ADDR = RemoteAddr()


@functools.cache
def _default_sync_backend() -> SyncDjangoCache:
    return SyncDjangoCache()


@functools.cache
def _default_async_backend() -> AsyncDjangoCache:
    return AsyncDjangoCache()


class BaseThrottle(Generic[_BackendT]):
    """What both twins share: configuration, keys, headers and specs.

    Args:
        max_requests: requests admitted per window, an int of at least 1;
            or the whole limit in any form ``Limiter`` takes for one limit:
            ``"5/minute"``, ``(5, Rate.minute)`` or ``Limit(5, 60)``; or a
            callable ``rate(request)`` returning such a limit, or None to
            exempt the request (an ``AsyncThrottle`` may await it). The
            limit is named after the cache key, as headers show it; its
            window is in the state key, so a changed rate keeps its count
            and a changed window starts another counter.
        duration_in_seconds: the window, a ``Rate`` or a number of seconds;
            only with an int ``max_requests``.
        cache_key: who requests count against; ``RemoteAddr()`` by default.
        backend: where state lives; the Django cache ``"default"`` by
            default, else a Django cache backend, ``SyncRedis``/``AsyncRedis``
            or ``MemoryBackend``.
        algorithm: ``SimpleRate()`` (default) or ``LeakyBucket()``.
        response_headers: header providers; ``[XRateLimit(), RetryAfter()]``
            by default, ``[]`` for none.
        scope: share this throttle's counters with every throttle of the
            same scope and cache key name, on any view; by default each view
            counts on its own.
        clock: returns the time in seconds; by default the store's clock.
        on_failure: when the store fails, ``"allow"`` the request, ``"deny"``
            it (503), or ``"raise"``; by default ``LUATHROTTLE["on_failure"]``.
        cache_denials: remember denials in this process until their
            ``retry_after``, and answer the requests they prove denied
            without calling the store: True for up to 10,000 identities, an
            int for that many, False (default) for none. A stage's script
            call is answered here only when every throttle in it caches.
        observers: callables given a ``luathrottle.DecisionEvent`` for each
            of this throttle's decisions, besides the process's observers.
        shadow: decide and count as ever, but refuse nothing and send no
            quota headers; observers see ``Outcome.SHADOW_DENIED``. As
            ``LUATHROTTLE["shadow"]`` does for every throttle.
        near_limit: report an admission that leaves less than this fraction
            of the limit as ``Outcome.NEAR_LIMIT``; by default
            ``LUATHROTTLE["near_limit"]`` (None: never).
        max_wait: hold a denied request up to this many seconds, until it
            fits, rather than answer 429; None (default) for never. Only an
            ``AsyncThrottle`` holds: a ``SyncThrottle`` refuses it.
        counting: ``"all_or_nothing"`` (default): a request another
            throttle of its stage denies costs this one nothing, when they
            share a script call (same store, algorithm and clock);
            ``"each"``: this throttle counts every request it admits, even
            one another throttle denies (DRF's way). Throttles of a stage
            that count apart are decided in calls apart, in one round trip.
        penalty: seconds for which a client this throttle denies is denied
            every request, counted from the denial; None (default) for none.
            A ``Limit(penalty=...)`` rate sets its own (``docs/penalty.md``).

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    _backend_type: ClassVar[type[SyncBackend] | type[AsyncBackend]]
    _default_backend: ClassVar[Callable[[], SyncBackend | AsyncBackend]]
    #: Whether a denied request may be held (``max_wait``).
    _holds: ClassVar[bool] = False

    def __init__(
        self,
        max_requests: int | LimitSpec | RateCallable,
        duration_in_seconds: int | None = None,
        *,
        cache_key: BaseThrottleCacheKey | None = None,
        backend: _BackendT | None = None,
        algorithm: BaseThrottleAlgorithm | None = None,
        response_headers: Iterable[BaseResponseHeadersProvider] | None = None,
        scope: str | None = None,
        clock: Callable[[], float] | None = None,
        on_failure: OnFailure | None = None,
        cache_denials: bool | int = False,
        observers: Iterable[Observer] | None = None,
        shadow: bool = False,
        near_limit: float | None = None,
        max_wait: float | None = None,
        counting: Counting = "all_or_nothing",
        penalty: float | None = None,
    ) -> None:
        self.penalty = check_penalty(penalty)
        self.cache_key = _REMOTE_ADDR if cache_key is None else cache_key
        if not isinstance(self.cache_key, BaseThrottleCacheKey):
            raise TypeError(
                "cache_key must be a BaseThrottleCacheKey such as RemoteAddr(), "
                f"got {self.cache_key!r}"
            )
        self.algorithm = SimpleRate() if algorithm is None else algorithm
        if not isinstance(self.algorithm, BaseThrottleAlgorithm):
            raise TypeError(
                "algorithm must be a BaseThrottleAlgorithm such as SimpleRate(), "
                f"got {self.algorithm!r}"
            )
        #: The rate callable, or None when the limit is fixed.
        self.rate: RateCallable | None = None
        self._limit: Limit | None = None
        if callable(max_requests) and not isinstance(max_requests, int):
            if duration_in_seconds is not None:
                raise TypeError(
                    "duration_in_seconds goes only with an int max_requests, "
                    f"not with the rate callable {max_requests!r}"
                )
            self._check_rate(max_requests)
            self.rate = max_requests
        else:
            limit = parse_limit(max_requests, duration_in_seconds)
            self._limit = renamed(limit, self.cache_key.name, self.penalty)
            self.algorithm.check_limits((self._limit,))
        self._rate_limits: dict[str | Limit, Limit] = {}
        self.script: Script = self.algorithm.script
        self.backend: _BackendT = cast(
            _BackendT, type(self)._default_backend() if backend is None else backend
        )
        check_backend_kind(self.backend, self._backend_type, type(self).__name__)
        self.response_headers = check_providers(response_headers)
        self.scope = check_scope(scope)
        self.clock = check_clock(clock)
        self.on_failure = None if on_failure is None else check_on_failure(on_failure)
        self.denials: DenialCache | None = denial_cache(
            cache_denials, self.algorithm, self.clock
        )
        self.observers = check_observers(observers)
        self.shadow = check_shadow(shadow)
        self.near_limit = check_near_limit(near_limit)
        self.counting = check_counting(counting)
        self.max_wait = check_max_wait(max_wait, type(self).__name__, self._holds)
        # The state key's frame per view (and limit, under a rate callable).
        self._frames: dict[str | tuple[str, Limit], tuple[str, str]] = {}
        self._batching: Batching | None = None

    def _check_rate(self, rate: RateCallable) -> None:
        """Refuse a rate callable this twin cannot call; sync throttles
        cannot await.

        Raises:
            TypeError: naming ``max_requests``.
        """

    @property
    def limit(self) -> Limit:
        """The throttle's fixed limit.

        Raises:
            AttributeError: the limit depends on the request (``rate``).
        """
        if self._limit is None:
            raise AttributeError(
                f"{self!r} has no fixed limit: its rate callable chooses one "
                "per request"
            )
        return self._limit

    def _rate_name(self) -> str:
        rate = self.rate
        name = getattr(rate, "__qualname__", None) or type(rate).__qualname__
        return f"{getattr(rate, '__module__', None) or '?'}.{name}"

    def _validated(self, value: object) -> Limit | None:
        """What a rate callable returned, as a limit named after the cache
        key, or None (exempt).

        Raises:
            TypeError, ValueError: naming the throttle and the callable.
        """
        if value is None:
            return None
        # Only strings and Limits are remembered: a pair (5.0, 60) equals
        # (5, 60) as a dict key, but a float is no count.
        memo = value if isinstance(value, str | Limit) else None
        if memo is not None and memo in self._rate_limits:
            return self._rate_limits[memo]
        try:
            if isinstance(value, int | float) or not isinstance(
                value, str | Limit | tuple
            ):
                raise TypeError(
                    "a rate callable must return a limit string such as "
                    "'5/minute', a Limit, a (max_requests, duration) pair, or "
                    f"None, got {type(value).__name__}"
                )
            limit = renamed(parse_limit(value), self.cache_key.name, self.penalty)
            self.algorithm.check_limits((limit,))
        except (TypeError, ValueError) as exc:
            raise type(exc)(
                f"{self!r}: its rate {self._rate_name()} returned {value!r}: {exc}"
            ) from None
        if memo is not None:
            if len(self._rate_limits) >= _REMEMBERED:
                self._rate_limits.clear()
            self._rate_limits[memo] = limit
        return limit

    def limit_for(self, request: Any) -> Limit | None:
        """The limit ``request`` counts under, or None when the rate
        callable exempts it.

        Raises:
            TypeError, ValueError: the rate callable returned something that
                is not a limit; the message names the throttle and the
                callable.
        """
        if self.rate is None:
            return self._limit
        value = self.rate(request)
        if inspect.isawaitable(value):
            close = getattr(value, "close", None)
            if close is not None:
                close()
            raise TypeError(
                f"{self!r}: its rate {self._rate_name()} returned an awaitable; "
                "only an AsyncThrottle awaits its rate"
            )
        return self._validated(value)

    async def alimit_for(self, request: Any) -> Limit | None:
        """``limit_for``, awaiting the rate callable when it is async."""
        if self.rate is None:
            return self._limit
        value = self.rate(request)
        if inspect.isawaitable(value):
            value = await value
        return self._validated(value)

    def state_key(self, request: Any, view_scope: str) -> str | None:
        """The hashed state key ``request`` counts on under the throttle's
        fixed limit on the view ``view_scope``; None when the cache key
        skips it.

        Raises:
            TypeError: the cache key returned something else than a str.
        """
        identity = self.identity(request)
        if identity is None:
            return None
        return self.keyed(identity, view_scope, self.limit).keys[0]

    def identity(self, request: Any) -> str | None:
        """Who ``request`` counts against, as the cache key says; None skips
        this throttle.

        Raises:
            TypeError: the cache key returned something else than a str.
        """
        return identity_of(self.cache_key, request)

    def keyed(
        self,
        identity: str,
        view_scope: str,
        limit: Limit,
        *,
        request: Any = None,
        settings: Defaults = NO_SETTINGS,
        door: str = "django",
    ) -> Check:
        """The check of ``identity`` under ``limit`` on the view ``view_scope``:
        one hit, under this throttle's policy, else the ``settings``' one; in
        shadow mode when the throttle, its limit or the ``settings`` say so;
        near its limit at its own ``near_limit``, else at the settings'."""
        # A fixed limit's frame goes by the view alone: a Limit hashes slowly.
        memo = view_scope if limit is self._limit else (view_scope, limit)
        frame = self._frames.get(memo)
        if frame is None:
            scope = f"{self.scope or view_scope}\x00{self.cache_key.name}"
            frame = key_frame(KEY_PREFIX, self.script, scope, window_counter(limit))
            if len(self._frames) >= _REMEMBERED:
                self._frames.clear()
            self._frames[memo] = frame
        found = self._batching
        if found is None:
            # Found on the first request, when settings are ready: they
            # never change for one backend.
            found = self._batching = batching(
                self.backend.traits(), self.algorithm, self.clock
            )
        digest = identity_digest(identity)
        return _new_check(
            (
                self.backend,
                self.algorithm,
                self.script,
                (frame[0] + digest + frame[1],),
                (limit,),
                found.store,
                (found.batch, digest) if found.single_slot else found.batch,
                "hit",
                1,
                self.clock,
                self.denials,
                self.on_failure or settings.on_failure,
                door,
                self.observers,
                self,
                request,
                identity,
                self.shadow or settings.shadow or limit.shadow,
                settings.near_limit if self.near_limit is None else self.near_limit,
                None,
                self.counting == "each",
            )
        )

    def check_backend(self) -> None:
        """Check the backend's configuration.

        Raises:
            ValueError: naming what is missing, such as a cache alias that
                is not in ``CACHES``.
        """
        self.backend.check()

    def unsafe_reason(self) -> str | None:
        """Why the backend cannot keep this limit exact, or None if it can.

        Raises:
            ValueError: the backend's configuration names nothing usable.
        """
        return self.backend.traits().unsafe_reason

    def provide_response_specs(self) -> dict[str, dict[str, Any]]:
        """The OpenAPI response this throttle can answer with: a 429.

        Returns:
            ``{"429": response object}``, its schema a reference to
            ``ErrorModel``, with the headers of every provider.
        """
        return {"429": refusal_spec(self.response_headers)}

    def __repr__(self) -> str:
        backend = repr(self.backend)
        if len(backend) > _MAX_BACKEND_REPR:
            backend = f"{type(self.backend).__name__}(...)"
        if self._limit is None:
            limit = self._rate_name()
        else:
            limit = f"{self._limit.max_requests}, {self._limit.duration}"
        return (
            f"{type(self).__name__}({limit}, cache_key={self.cache_key!r}, "
            f"backend={backend}, algorithm={self.algorithm!r})"
        )


class SyncThrottle(BaseThrottle[SyncBackend]):
    """A throttle for sync views; see ``BaseThrottle`` for the arguments."""

    _backend_type = SyncBackend
    _default_backend = _default_sync_backend

    def _check_rate(self, rate: RateCallable) -> None:
        if inspect.iscoroutinefunction(rate):
            raise TypeError(
                f"max_requests is the async rate callable {rate!r}; a "
                "SyncThrottle cannot await it: use AsyncThrottle, or a sync "
                "callable"
            )


class AsyncThrottle(BaseThrottle[AsyncBackend]):
    """A throttle for async views; see ``BaseThrottle`` for the arguments."""

    _backend_type = AsyncBackend
    _default_backend = _default_async_backend
    _holds = True
