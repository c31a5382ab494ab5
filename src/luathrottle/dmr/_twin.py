"""The parts of luathrottle's dmr throttles that face dmr: its cache keys
and header specs, the configuration both throttles share, and where a
request keeps the outcomes of its stages."""

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self

# luathrottle.dmr has checked that django-modern-rest is installed.
from dmr.exceptions import EndpointMetadataError, TooManyRequestsError
from dmr.headers import HeaderSpec
from dmr.metadata import ResponseSpec
from dmr.throttling.cache_keys import BaseThrottleCacheKey, RemoteAddr

from luathrottle import BaseThrottleAlgorithm
from luathrottle import headers as _headers
from luathrottle._checks import Check, Counting, Verdict, weak_request
from luathrottle._counting import CountWhen, check_count_when
from luathrottle._events import Observer
from luathrottle._failures import OnFailure
from luathrottle.django import cache_keys as _lt_keys
from luathrottle.django import throttles as _lt
from luathrottle.django._conf import get_config
from luathrottle.django._outcomes import headers_for
from luathrottle.django._unsafe import warn_once
from luathrottle.headers import BaseResponseHeadersProvider

if TYPE_CHECKING:
    from dmr.controller import Controller
    from dmr.endpoint import Endpoint
    from dmr.metadata import EndpointMetadata

__all__ = [
    "AnyCacheKey",
    "Context",
    "RateLimitIETFDraft",
    "RetryAfter",
    "State",
    "Twin",
    "XRateLimit",
    "endpoint_scope",
    "recorded",
    "request_state",
]

#: Where the request keeps its stages' outcomes.
_STATE_ATTRIBUTE = "_luathrottle_dmr"
AnyCacheKey = BaseThrottleCacheKey | _lt_keys.BaseThrottleCacheKey


class Context(NamedTuple):
    """What a cache key reads: the endpoint and the controller."""

    endpoint: "Endpoint"
    controller: "Controller[Any]"


class _FromDmr(_lt_keys.BaseThrottleCacheKey):
    """A dmr cache key, called with the endpoint and the controller."""

    def __init__(self, key: BaseThrottleCacheKey) -> None:
        super().__init__(runs_before_auth=key.runs_before_auth, name=key.name)
        self.key = key

    def __call__(self, request: Any) -> str | None:
        """``request`` is the ``Context`` of the call."""
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


class Twin:
    """What both throttles share, next to dmr's own base class."""

    _inner_type: ClassVar[type[_lt.BaseThrottle[Any]]]
    inner: _lt.BaseThrottle[Any]
    max_requests: int
    duration_in_seconds: int
    cache_key: AnyCacheKey
    response_headers: tuple[BaseResponseHeadersProvider, ...]

    def __init__(
        self,
        max_requests: int | str,
        duration_in_seconds: int | None = None,
        *,
        cache_key: AnyCacheKey | None = None,
        backend: Any = None,
        algorithm: BaseThrottleAlgorithm | None = None,
        response_headers: Iterable[BaseResponseHeadersProvider] | None = None,
        scope: str | None = None,
        clock: Callable[[], float] | None = None,
        on_failure: OnFailure | None = None,
        cache_denials: bool | int = False,
        observers: Iterable[Observer] | None = None,
        shadow: bool = False,
        near_limit: float | None = None,
        counting: Counting = "all_or_nothing",
        count_when: CountWhen | None = None,
        penalty: float | None = None,
    ) -> None:
        self.count_when = check_count_when(count_when, type(self).__name__)
        # The inner throttle checks that the backend is of its kind.
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
            observers=observers,
            shadow=shadow,
            near_limit=near_limit,
            counting=counting,
            penalty=penalty,
        )
        self.max_requests = self.inner.limit.max_requests
        self.duration_in_seconds = self.inner.limit.duration
        self.cache_key = key
        self.response_headers = self.inner.response_headers
        # dmr's base class keeps these two; its helpers may read them.
        self._backend = self.inner.backend
        self._algorithm = self.inner.algorithm
        self._scope, self._clock, self._on_failure = scope, clock, on_failure
        self._cache_denials = cache_denials

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
        return type(self)(
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
            scope=self._scope,
            clock=self._clock,
            on_failure=self._on_failure,
            cache_denials=self._cache_denials,
            observers=self.inner.observers,
            shadow=self.inner.shadow,
            near_limit=self.inner.near_limit,
            counting=self.inner.counting,
            count_when=self.count_when,
            penalty=self.inner.penalty,
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
        warn_once(message, reason, stacklevel=3)

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
        check = self.check(endpoint, controller, _place(self, endpoint))
        return None if check is None else check.keys[0]

    def check(
        self, endpoint: "Endpoint", controller: "Controller[Any]", place: int
    ) -> Check | None:
        """The check this request makes here, or None to skip: counted
        within the endpoint, at this throttle's ``place`` on it."""
        identity = self.inner.identity(Context(endpoint, controller))
        if identity is None:
            return None
        return self.inner.keyed(
            identity,
            f"{endpoint_scope(endpoint, controller)}{place}",
            self.inner.limit,
            # The verdicts stay on the request (``request_state``).
            request=weak_request(controller.request),
            settings=get_config(),
            door="dmr",
        )

    def report_usage(
        self, endpoint: "Endpoint", controller: "Controller[Any]"
    ) -> dict[str, str]:
        """This throttle's headers for the request, from what its stage
        decided; no store is asked."""
        return headers_for(
            item
            for item in recorded(controller.request)
            if item.check.source is self.inner
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.max_requests}, "
            f"{self.duration_in_seconds}, cache_key={self.cache_key!r}, "
            f"backend={type(self.inner.backend).__name__}(...), "
            f"algorithm={self.inner.algorithm!r})"
        )


def endpoint_scope(endpoint: "Endpoint", controller: "Controller[Any]") -> str:
    """Names the endpoint in its state keys: the controller's module and
    name, and the method (dmr's own keys leave the module out)."""
    cls = type(controller)
    return f"{cls.__module__}.{cls.__qualname__}\x00{endpoint.metadata.method}\x00"


def _place(throttle: object, endpoint: "Endpoint") -> int:
    for index, item in enumerate(endpoint.metadata.throttling or ()):
        if item is throttle:
            return index
    return -1


class State:
    """The verdicts of one request's stages on one endpoint."""

    __slots__ = ("decided", "endpoint", "verdicts")

    def __init__(self, endpoint: object) -> None:
        self.endpoint = endpoint
        self.decided: set[bool] = set()
        self.verdicts: list[Verdict] = []


def request_state(request: Any, endpoint: object) -> State:
    state: State | None = getattr(request, _STATE_ATTRIBUTE, None)
    if state is None or state.endpoint is not endpoint:
        state = State(endpoint)
        setattr(request, _STATE_ATTRIBUTE, state)
    return state


def recorded(request: Any) -> list[Verdict]:
    state: State | None = getattr(request, _STATE_ATTRIBUTE, None)
    return [] if state is None else state.verdicts
