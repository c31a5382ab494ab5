"""django-modern-rest throttles, decided by luathrottle: port by import.

::

    # from dmr.throttling import Rate, SyncThrottle
    # from dmr.throttling.backends import SyncDjangoCache
    from luathrottle.dmr import Rate, SyncDjangoCache, SyncThrottle

``SyncThrottle`` and ``AsyncThrottle`` subclass dmr's own, so controllers
take them wherever they take dmr's: ``@modify(throttling=[...])``,
``@validate(..., throttling=[...])``, a class-level ``throttling``, and
``DMR_SETTINGS[Settings.throttling]`` (with dmr's ``SyncOrAsyncThrottle``).
A denied request gets dmr's 429: its ``TooManyRequestsError`` body and the
headers of the throttles that denied. ``ThrottlingReport`` and the OpenAPI
429 response read as dmr's. What changes:

- each decision is one of luathrottle's Lua scripts, atomic on Redis and on
  Redis-backed Django caches, so limits are exact across processes;
- the first throttle of a stage (before auth, after auth) decides every
  luathrottle throttle of that stage in one round trip per store, all or
  nothing, and the others read the outcome;
- state keys are isolated per endpoint (its name and method) and per
  throttle (its place on the endpoint), so two equal throttles never
  share a counter unless they share a ``scope``;
- ``ThrottlingReport`` reads what the stages decided and asks no store.

Cache keys are dmr's (``RemoteAddr``, ``UserPk``, ``JwtToken``, re-exported
here) or luathrottle's (``luathrottle.django.cache_keys``, which read the
request). Backends, algorithms and header providers are luathrottle's,
re-exported here under dmr's names. Supported: django-modern-rest 0.16.
"""

import warnings
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self

try:
    from dmr.errors import ErrorType
    from dmr.exceptions import EndpointMetadataError, TooManyRequestsError
    from dmr.headers import HeaderSpec
    from dmr.metadata import ResponseSpec
    from dmr.response import APIError
    from dmr.throttling import AsyncThrottle as _DmrAsyncThrottle
    from dmr.throttling import SyncOrAsyncThrottle
    from dmr.throttling import SyncThrottle as _DmrSyncThrottle
    from dmr.throttling.cache_keys import (
        BaseThrottleCacheKey,
        JwtToken,
        RemoteAddr,
        UserPk,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "luathrottle.dmr needs django-modern-rest: pip install 'luathrottle[dmr]'"
    ) from exc

from luathrottle import BaseThrottleAlgorithm, LeakyBucket, Rate, SimpleRate
from luathrottle import headers as _headers
from luathrottle._failures import OnFailure
from luathrottle.backends import AsyncBackend, SyncBackend
from luathrottle.backends.django_cache import (
    AsyncDjangoCache,
    SyncDjangoCache,
    UnsafeCacheBackendWarning,
)
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import _outcomes
from luathrottle.django import cache_keys as _lt_keys
from luathrottle.django import throttles as _lt
from luathrottle.django._conf import get_config
from luathrottle.headers import BaseResponseHeadersProvider

if TYPE_CHECKING:
    from dmr.controller import Controller
    from dmr.endpoint import Endpoint
    from dmr.metadata import EndpointMetadata

__all__ = [
    "AsyncDjangoCache",
    "AsyncRedis",
    "AsyncThrottle",
    "BaseResponseHeadersProvider",
    "BaseThrottleAlgorithm",
    "BaseThrottleAsyncBackend",
    "BaseThrottleCacheKey",
    "BaseThrottleSyncBackend",
    "JwtToken",
    "LeakyBucket",
    "MemoryBackend",
    "Rate",
    "RateLimitIETFDraft",
    "RemoteAddr",
    "RetryAfter",
    "SimpleRate",
    "SyncDjangoCache",
    "SyncOrAsyncThrottle",
    "SyncRedis",
    "SyncThrottle",
    "ThrottlingReport",
    "UnsafeCacheBackendWarning",
    "UserPk",
    "XRateLimit",
]

#: The chapter's names for the backend base classes: a backend of your own
#: runs the algorithm's Lua script instead of dmr's ``get`` and ``incr``.
BaseThrottleSyncBackend = SyncBackend
BaseThrottleAsyncBackend = AsyncBackend
#: Where the request keeps its stages' outcomes.
_STATE_ATTRIBUTE = "_luathrottle_dmr"
_UNAVAILABLE = "Rate limiting is unavailable"
AnyCacheKey = BaseThrottleCacheKey | _lt_keys.BaseThrottleCacheKey


class _Context(NamedTuple):
    """What a cache key reads: the endpoint and the controller."""

    endpoint: "Endpoint"
    controller: "Controller[Any]"


class _FromDmr(_lt_keys.BaseThrottleCacheKey):
    """A dmr cache key, called with the endpoint and the controller."""

    def __init__(self, key: BaseThrottleCacheKey) -> None:
        super().__init__(runs_before_auth=key.runs_before_auth, name=key.name)
        self.key = key

    def __call__(self, request: Any) -> str | None:
        """``request`` is the ``_Context`` of the call."""
        identity: str | None = self.key(request.endpoint, request.controller)
        return identity


class _FromDjango(_lt_keys.BaseThrottleCacheKey):
    """A luathrottle cache key, called with the request."""

    def __init__(self, key: _lt_keys.BaseThrottleCacheKey) -> None:
        super().__init__(runs_before_auth=key.runs_before_auth, name=key.name)
        self.key = key

    def __call__(self, request: Any) -> str | None:
        """Reads the controller's request."""
        return self.key(request.controller.request)


def _as_header_specs(specs: dict[str, Any]) -> dict[str, HeaderSpec]:
    """luathrottle's OpenAPI header objects as dmr's ``HeaderSpec``."""
    return {
        name: spec
        if isinstance(spec, HeaderSpec)
        else HeaderSpec(description=spec.get("description"))
        for name, spec in specs.items()
    }


class XRateLimit(_headers.XRateLimit):
    """``X-RateLimit-*``; its specs are dmr ``HeaderSpec`` objects, for
    ``ResponseSpec(headers=...)``."""

    def provide_headers_specs(self) -> dict[str, HeaderSpec]:  # type: ignore[override]
        """Specs of the three headers, as dmr describes them."""
        return _as_header_specs(super().provide_headers_specs())


class RetryAfter(_headers.RetryAfter):
    """``Retry-After``; its spec is a dmr ``HeaderSpec``."""

    def provide_headers_specs(self) -> dict[str, HeaderSpec]:  # type: ignore[override]
        """Spec of ``Retry-After``, as dmr describes it."""
        return _as_header_specs(super().provide_headers_specs())


class RateLimitIETFDraft(_headers.RateLimitIETFDraft):
    """``RateLimit-Policy`` and ``RateLimit``; specs are dmr ``HeaderSpec``
    objects, for ``ResponseSpec(headers=...)`` as in the chapter."""

    def provide_headers_specs(self) -> dict[str, HeaderSpec]:  # type: ignore[override]
        """Specs of both headers, as dmr describes them."""
        return _as_header_specs(super().provide_headers_specs())


#: One pair for every throttle, so that their headers group at once.
_DEFAULT_HEADERS = (XRateLimit(), RetryAfter())


def _wrapped_key(cache_key: object) -> _lt_keys.BaseThrottleCacheKey:
    if isinstance(cache_key, BaseThrottleCacheKey):
        return _FromDmr(cache_key)
    if isinstance(cache_key, _lt_keys.BaseThrottleCacheKey):
        return _FromDjango(cache_key)
    raise TypeError(
        "cache_key must be a dmr or luathrottle cache key such as RemoteAddr(), "
        f"got {cache_key!r}"
    )


class _Twin:
    """What both throttles share, next to dmr's own base class."""

    _inner_type: ClassVar[type[_lt.BaseThrottle[Any]]]
    inner: _lt.BaseThrottle[Any]
    max_requests: int
    duration_in_seconds: int
    cache_key: AnyCacheKey
    response_headers: tuple[BaseResponseHeadersProvider, ...]

    def _setup(
        self,
        max_requests: int | str,
        duration_in_seconds: int | None,
        cache_key: AnyCacheKey | None,
        backend: Any,
        algorithm: BaseThrottleAlgorithm | None,
        response_headers: Iterable[BaseResponseHeadersProvider] | None,
        scope: str | None,
        clock: Callable[[], float] | None,
        on_failure: OnFailure | None,
        cache_denials: bool | int,
    ) -> None:
        key = RemoteAddr() if cache_key is None else cache_key
        self.inner = self._inner_type(
            max_requests,
            duration_in_seconds,
            cache_key=_wrapped_key(key),
            backend=backend,
            algorithm=algorithm,
            response_headers=(
                _DEFAULT_HEADERS if response_headers is None else response_headers
            ),
            scope=scope,
            clock=clock,
            on_failure=on_failure,
            cache_denials=cache_denials,
        )
        self.max_requests = self.inner.limit.max_requests
        self.duration_in_seconds = self.inner.limit.duration
        self.cache_key = key
        self.response_headers = self.inner.response_headers
        # dmr's base class keeps these two; its helpers may read them.
        self._backend = self.inner.backend
        self._algorithm = self.inner.algorithm
        self._options = {
            "scope": scope,
            "clock": clock,
            "on_failure": on_failure,
            "cache_denials": cache_denials,
        }

    def replace(
        self,
        *,
        max_requests: int | None = None,
        duration_in_seconds: int | None = None,
        cache_key: AnyCacheKey | None = None,
        backend: Any = None,
        algorithm: BaseThrottleAlgorithm | None = None,
        response_headers: Iterable[BaseResponseHeadersProvider] | None = None,
    ) -> Self:
        """A copy with the given fields changed, as dmr's ``replace()``
        (which ``dmr.test.reduced_throttling`` uses)."""
        return type(self)(  # type: ignore[call-arg]
            self.max_requests if max_requests is None else max_requests,
            (
                self.duration_in_seconds
                if duration_in_seconds is None
                else duration_in_seconds
            ),
            cache_key=self.cache_key if cache_key is None else cache_key,
            backend=self.inner.backend if backend is None else backend,
            algorithm=self.inner.algorithm if algorithm is None else algorithm,
            response_headers=(
                self.response_headers if response_headers is None else response_headers
            ),
            **self._options,
        )

    __replace__ = replace

    def validate(
        self, controller_cls: type["Controller[Any]"], metadata: "EndpointMetadata"
    ) -> None:
        """Check the store when the controller is built: a missing cache
        alias raises, and an unsafe cache warns (or raises, or passes)
        as ``LUATHROTTLE["allow_unsafe_cache"]`` says."""
        try:
            reason = self.inner.unsafe_reason()
        except ValueError as exc:
            raise EndpointMetadataError(f"{metadata.endpoint_name}: {exc}") from exc
        policy = get_config().allow_unsafe_cache
        if reason is None or policy is None:
            return
        message = f"{metadata.endpoint_name}: {self!r}: {reason}"
        if policy is False:
            raise EndpointMetadataError(f"{message} (allow_unsafe_cache is False)")
        warnings.warn(message, UnsafeCacheBackendWarning, stacklevel=2)

    def _headers_spec(self) -> dict[str, HeaderSpec]:
        specs: dict[str, HeaderSpec] = {}
        for provider in self.response_headers:
            specs.update(_as_header_specs(provider.provide_headers_specs()))
        return specs

    def provide_response_specs(
        self,
        metadata: "EndpointMetadata",
        controller_cls: type["Controller[Any]"],
        existing_responses: Any,
    ) -> list[ResponseSpec]:
        """The 429 response, for OpenAPI, as dmr describes it; and a 503
        when the failure policy denies while the store is down."""
        specs = []
        if HTTPStatus.TOO_MANY_REQUESTS not in existing_responses:
            specs.append(
                ResponseSpec(
                    controller_cls.error_model,
                    status_code=TooManyRequestsError.status_code,
                    headers=self._headers_spec(),
                    description="Raised when throttling rate was hit",
                )
            )
        policy = self.inner.on_failure or get_config().on_failure
        if (
            policy == "deny"
            and HTTPStatus.SERVICE_UNAVAILABLE not in existing_responses
        ):
            specs.append(
                ResponseSpec(
                    controller_cls.error_model,
                    status_code=HTTPStatus.SERVICE_UNAVAILABLE,
                    headers={
                        name: HeaderSpec(description=spec.description, required=False)
                        for name, spec in self._headers_spec().items()
                    },
                    description="Raised when rate limiting is unavailable",
                )
            )
        return specs

    def full_cache_key(
        self, endpoint: "Endpoint", controller: "Controller[Any]"
    ) -> str | None:
        """The state key this request counts on here, or None to skip."""
        scope = f"{_endpoint_scope(endpoint, controller)}{_place(self, endpoint)}"
        call = self.inner.call(_Context(endpoint, controller), scope)
        return None if call is None else call.key

    def report_usage(
        self, endpoint: "Endpoint", controller: "Controller[Any]"
    ) -> dict[str, str]:
        """This throttle's headers for the request, from what its stage
        decided; no store is asked."""
        return _outcomes.headers_for(
            item
            for item in _recorded(controller.request)
            if item.throttle is self.inner
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.max_requests}, "
            f"{self.duration_in_seconds}, cache_key={self.cache_key!r}, "
            f"backend={type(self.inner.backend).__name__}(...), "
            f"algorithm={self.inner.algorithm!r})"
        )


def _endpoint_scope(endpoint: "Endpoint", controller: "Controller[Any]") -> str:
    """Names the endpoint in its state keys: the controller's module and
    name, and the method (dmr's own keys leave the module out)."""
    cls = type(controller)
    return f"{cls.__module__}.{cls.__qualname__}\x00{endpoint.metadata.method}\x00"


def _place(throttle: object, endpoint: "Endpoint") -> int:
    for index, item in enumerate(endpoint.metadata.throttling or ()):
        if item is throttle:
            return index
    return -1


class _State:
    """The outcomes of one request's stages on one endpoint."""

    __slots__ = ("decided", "endpoint", "outcomes")

    def __init__(self, endpoint: object) -> None:
        self.endpoint = endpoint
        self.decided: set[bool] = set()
        self.outcomes: list[_outcomes.ThrottleOutcome] = []


def _state(request: Any, endpoint: object) -> _State:
    state: _State | None = getattr(request, _STATE_ATTRIBUTE, None)
    if state is None or state.endpoint is not endpoint:
        state = _State(endpoint)
        setattr(request, _STATE_ATTRIBUTE, state)
    return state


def _recorded(request: Any) -> list[_outcomes.ThrottleOutcome]:
    state: _State | None = getattr(request, _STATE_ATTRIBUTE, None)
    return [] if state is None else state.outcomes


def _stage_calls(
    throttle: _Twin, endpoint: "Endpoint", controller: "Controller[Any]"
) -> list[_outcomes.ThrottleCall]:
    """The calls of every throttle of ``throttle``'s kind and stage."""
    before = throttle.cache_key.runs_before_auth
    context = _Context(endpoint, controller)
    prefix = _endpoint_scope(endpoint, controller)
    calls: list[_outcomes.ThrottleCall] = []
    for index, item in enumerate(endpoint.metadata.throttling or ()):
        # dmr gives an endpoint throttles of its own kind only.
        if not isinstance(item, _Twin) or item.cache_key.runs_before_auth != before:
            continue
        call = item.inner.call(context, f"{prefix}{index}")
        if call is not None:
            calls.append(call)
    return calls


def _judge(
    state: _State, outcomes: Sequence[_outcomes.ThrottleOutcome], controller: Any
) -> None:
    """Record the stage; raise dmr's 429 (or a 503 when the store failed and
    the policy denies) with the headers of the throttles that denied."""
    state.outcomes.extend(outcomes)
    denied = [item for item in outcomes if not item.decision.allowed]
    if not denied:
        return
    headers = _outcomes.headers_for(denied)
    if any(item.error is not None for item in denied):
        raise APIError(
            controller.format_error(_UNAVAILABLE, error_type=ErrorType.ratelimit),
            status_code=HTTPStatus.SERVICE_UNAVAILABLE,
            headers=headers,
        )
    raise TooManyRequestsError(headers=headers)


class SyncThrottle(_Twin, _DmrSyncThrottle):  # type: ignore[misc]
    """dmr's ``SyncThrottle``, decided by luathrottle; for sync endpoints.

    Args:
        max_requests: requests per window; or the whole limit, ``"5/minute"``.
        duration_in_seconds: the window, a ``Rate`` or seconds.
        cache_key: dmr's ``RemoteAddr()`` (default), ``UserPk()``,
            ``JwtToken()``, or a ``luathrottle.django.cache_keys`` key.
        backend: ``SyncDjangoCache()`` on the ``default`` cache (default),
            ``SyncDjangoCache(cache_name=...)``, ``SyncRedis(client)`` or
            ``MemoryBackend()``.
        algorithm: ``SimpleRate()`` (default) or ``LeakyBucket()``.
        response_headers: ``[XRateLimit(), RetryAfter()]`` by default.
        scope: share counters with every throttle of this scope and cache
            key name, on any endpoint.
        clock: returns the time in seconds; by default the store's clock.
        on_failure: ``"allow"``, ``"deny"`` (503) or ``"raise"`` when the
            store fails; by default ``LUATHROTTLE["on_failure"]``.
        cache_denials: True or a number of identities to answer remembered
            denials without the store (see ``luathrottle.django``); False
            (default) for none.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    _inner_type = _lt.SyncThrottle

    def __init__(
        self,
        max_requests: int | str,
        duration_in_seconds: int | None = None,
        *,
        cache_key: AnyCacheKey | None = None,
        backend: SyncBackend | None = None,
        algorithm: BaseThrottleAlgorithm | None = None,
        response_headers: Iterable[BaseResponseHeadersProvider] | None = None,
        scope: str | None = None,
        clock: Callable[[], float] | None = None,
        on_failure: OnFailure | None = None,
        cache_denials: bool | int = False,
    ) -> None:
        self._setup(
            max_requests,
            duration_in_seconds,
            cache_key,
            backend,
            algorithm,
            response_headers,
            scope,
            clock,
            on_failure,
            cache_denials,
        )

    def __call__(
        self, endpoint: "Endpoint", controller: "Controller[Any]", lock: Any
    ) -> None:
        """Decide this throttle's stage, unless an earlier throttle did.
        dmr's lock is not taken: every decision is atomic in the store.

        Raises:
            TooManyRequestsError: a throttle of the stage denied.
        """
        state = _state(controller.request, endpoint)
        stage = self.cache_key.runs_before_auth
        if stage in state.decided:
            return
        state.decided.add(stage)
        calls = _stage_calls(self, endpoint, controller)
        if calls:
            outcomes = _lt.SyncThrottle.hit_all(
                calls, on_failure=get_config().on_failure
            )
            _judge(state, outcomes, controller)


class AsyncThrottle(_Twin, _DmrAsyncThrottle):  # type: ignore[misc]
    """dmr's ``AsyncThrottle``, decided by luathrottle; for async endpoints.
    Takes ``SyncThrottle``'s arguments, with ``AsyncDjangoCache``,
    ``AsyncRedis`` or ``MemoryBackend`` as the backend."""

    _inner_type = _lt.AsyncThrottle

    def __init__(
        self,
        max_requests: int | str,
        duration_in_seconds: int | None = None,
        *,
        cache_key: AnyCacheKey | None = None,
        backend: AsyncBackend | None = None,
        algorithm: BaseThrottleAlgorithm | None = None,
        response_headers: Iterable[BaseResponseHeadersProvider] | None = None,
        scope: str | None = None,
        clock: Callable[[], float] | None = None,
        on_failure: OnFailure | None = None,
        cache_denials: bool | int = False,
    ) -> None:
        self._setup(
            max_requests,
            duration_in_seconds,
            cache_key,
            backend,
            algorithm,
            response_headers,
            scope,
            clock,
            on_failure,
            cache_denials,
        )

    async def __call__(
        self, endpoint: "Endpoint", controller: "Controller[Any]", lock: Any
    ) -> None:
        """Decide this throttle's stage, unless an earlier throttle did."""
        state = _state(controller.request, endpoint)
        stage = self.cache_key.runs_before_auth
        if stage in state.decided:
            return
        state.decided.add(stage)
        calls = _stage_calls(self, endpoint, controller)
        if calls:
            outcomes = await _lt.AsyncThrottle.hit_all(
                calls, on_failure=get_config().on_failure
            )
            _judge(state, outcomes, controller)

    async def report_usage(  # type: ignore[override]
        self, endpoint: "Endpoint", controller: "Controller[Any]"
    ) -> dict[str, str]:
        """This throttle's headers for the request; no store is asked."""
        return _Twin.report_usage(self, endpoint, controller)


class ThrottlingReport:
    """The rate-limit headers of every luathrottle throttle the request
    went through, as dmr's ``ThrottlingReport(controller)`` gives them, but
    read from the stages' outcomes: no store is asked.

    Args:
        controller: the controller serving the request.
    """

    __slots__ = ("controller",)

    def __init__(self, controller: "Controller[Any]") -> None:
        self.controller = controller

    def report(self) -> dict[str, str]:
        """The headers, for sync endpoints."""
        return _outcomes.headers_for(_recorded(self.controller.request))

    async def areport(self) -> dict[str, str]:
        """The headers, for async endpoints."""
        return self.report()
