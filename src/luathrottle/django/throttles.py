"""Throttles: one limit, a cache key, a backend and response headers.

The centre of a throttle does no I/O and knows no view: ``call()`` turns a
request and a scope into a state key, and ``ThrottleOutcome`` carries what
the script answered. The twins differ only in ``hit_all()``, which runs
the calls of one stage: one script call for all the throttles that share a
backend, an algorithm and a clock, since the scripts decide several keys,
each with its own limit, all or nothing. On Redis Cluster a call can only
take keys of one slot, so there it is one call per identity, and the calls
go out in one pipeline: each identity's limits stay all or nothing, but a
request one identity denies may still count against another's.
"""

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar, cast

from luathrottle._clock import check_clock, microseconds
from luathrottle.algorithms import BaseThrottleAlgorithm, SimpleRate
from luathrottle.backends.base import (
    AsyncBackend,
    ScriptCall,
    SyncBackend,
    check_backend_kind,
)
from luathrottle.backends.django_cache import AsyncDjangoCache, SyncDjangoCache
from luathrottle.backends.memory import MemoryBackend
from luathrottle.decision import LimitDecision, decode_reply
from luathrottle.django.cache_keys import BaseThrottleCacheKey, RemoteAddr
from luathrottle.exceptions import BackendError
from luathrottle.failures import OnFailure, check_on_failure, guarded_failure
from luathrottle.headers import BaseResponseHeadersProvider, RetryAfter, XRateLimit
from luathrottle.keys import hash_tag, identity_digest, key_frame
from luathrottle.rates import Limit, LimitSpec, parse_limit
from luathrottle.scripts import Script

__all__ = [
    "AsyncThrottle",
    "BaseThrottle",
    "SyncThrottle",
    "ThrottleCall",
    "ThrottleOutcome",
    "ThrottlingReport",
    "forget_outcomes",
    "headers_for",
    "record_outcomes",
]

_BackendT = TypeVar("_BackendT", SyncBackend, AsyncBackend)

#: The start of every state key a throttle writes.
KEY_PREFIX = "lt"
_OUTCOMES_ATTRIBUTE = "_luathrottle_outcomes"
_MAX_SCOPE = 200
# Clients' reprs can run to a page; messages name the backend's type instead.
_MAX_BACKEND_REPR = 60
_MEMORY_UNSAFE = (
    "MemoryBackend keeps its state in each process: N processes admit up to "
    "N times the limit"
)


@functools.cache
def _default_sync_backend() -> SyncDjangoCache:
    return SyncDjangoCache()


@functools.cache
def _default_async_backend() -> AsyncDjangoCache:
    return AsyncDjangoCache()


class ThrottleCall(NamedTuple):
    """One throttle's part of a stage: the state key it counts on.

    Attributes:
        throttle: the throttle.
        key: the state key of this request's identity within the scope.
    """

    throttle: "BaseThrottle[Any]"
    key: str


class ThrottleOutcome(NamedTuple):
    """How one throttle judged one request.

    Attributes:
        throttle: the throttle.
        decision: its limit's decision; when another throttle of the same
            script call denied, nothing was counted.
        key: the state key counted on: hashed, never the raw identity.
        error: what the store did, when the failure policy decided instead.
    """

    throttle: "BaseThrottle[Any]"
    decision: LimitDecision
    key: str
    error: BackendError | None = None


def _check_scope(scope: object) -> str | None:
    if scope is None:
        return None
    if not isinstance(scope, str):
        raise TypeError(f"scope must be a str, got {type(scope).__name__} {scope!r}")
    if not scope or len(scope) > _MAX_SCOPE or not scope.isprintable():
        raise ValueError(
            f"scope must be 1 to {_MAX_SCOPE} printable characters, got {scope!r}"
        )
    return scope


#: One pair for every throttle, so that their headers group at once.
_DEFAULT_HEADERS = (XRateLimit(), RetryAfter())


def _check_headers(
    response_headers: Iterable[BaseResponseHeadersProvider] | None,
) -> tuple[BaseResponseHeadersProvider, ...]:
    if response_headers is None:
        return _DEFAULT_HEADERS
    if not isinstance(response_headers, Iterable):
        raise TypeError(
            "response_headers must be a list of header providers such as "
            f"[XRateLimit()], got {response_headers!r}"
        )
    providers = tuple(response_headers)
    for provider in providers:
        if not isinstance(provider, BaseResponseHeadersProvider):
            raise TypeError(
                "response_headers must hold BaseResponseHeadersProvider objects "
                f"such as XRateLimit(), got {provider!r}"
            )
    return providers


class BaseThrottle(Generic[_BackendT]):
    """What both twins share: configuration, keys, headers and specs.

    Args:
        max_requests: requests admitted per window, an int of at least 1;
            or the whole limit in any form ``Limiter`` takes for one limit:
            ``"5/minute"``, ``(5, Rate.minute)`` or ``Limit(5, 60)``. The
            limit is named after the cache key, as headers show it.
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

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    _backend_type: ClassVar[type[SyncBackend] | type[AsyncBackend]]
    _default_backend: ClassVar[Callable[[], SyncBackend | AsyncBackend]]

    def __init__(
        self,
        max_requests: int | LimitSpec,
        duration_in_seconds: int | None = None,
        *,
        cache_key: BaseThrottleCacheKey | None = None,
        backend: _BackendT | None = None,
        algorithm: BaseThrottleAlgorithm | None = None,
        response_headers: Iterable[BaseResponseHeadersProvider] | None = None,
        scope: str | None = None,
        clock: Callable[[], float] | None = None,
        on_failure: OnFailure | None = None,
    ) -> None:
        self.cache_key = RemoteAddr() if cache_key is None else cache_key
        if not isinstance(self.cache_key, BaseThrottleCacheKey):
            raise TypeError(
                "cache_key must be a BaseThrottleCacheKey such as RemoteAddr(), "
                f"got {self.cache_key!r}"
            )
        limit = parse_limit(max_requests, duration_in_seconds)
        self.limit = Limit(limit.max_requests, limit.duration, name=self.cache_key.name)
        self.algorithm = SimpleRate() if algorithm is None else algorithm
        if not isinstance(self.algorithm, BaseThrottleAlgorithm):
            raise TypeError(
                "algorithm must be a BaseThrottleAlgorithm such as SimpleRate(), "
                f"got {self.algorithm!r}"
            )
        self.algorithm.check_limits((self.limit,))
        self.script: Script = self.algorithm.script
        self.backend: _BackendT = cast(
            _BackendT, type(self)._default_backend() if backend is None else backend
        )
        check_backend_kind(self.backend, self._backend_type, type(self).__name__)
        self.response_headers = _check_headers(response_headers)
        self.scope = _check_scope(scope)
        self.clock = check_clock(clock)
        self.on_failure = None if on_failure is None else check_on_failure(on_failure)
        # The state key's frame on each view the throttle counts for.
        self._frames: dict[str, tuple[str, str]] = {}
        # Throttles with equal batch identities can share one script call.
        # Algorithms are equal when their types are, and types hash faster.
        self.batch_identity = (
            _backend_identity(self.backend),
            type(self.algorithm),
            id(clock),
        )

    def call(self, request: Any, view_scope: str) -> ThrottleCall | None:
        """The state key ``request`` counts on, or None to skip this throttle.

        Args:
            request: what the cache key reads.
            view_scope: names the view; ignored when the throttle has its
                own ``scope``.

        Raises:
            TypeError: the cache key returned something else than a str.
        """
        identity = self.cache_key(request)
        if identity is None:
            return None
        if not isinstance(identity, str):
            raise TypeError(
                f"{self.cache_key!r} returned {type(identity).__name__}; cache "
                "keys must return a str or None"
            )
        frame = self._frames.get(view_scope)
        if frame is None:
            scope = f"{self.scope or view_scope}\x00{self.cache_key.name}"
            frame = key_frame(KEY_PREFIX, self.script, scope, self.limit)
            self._frames[view_scope] = frame
        return ThrottleCall(self, frame[0] + identity_digest(identity) + frame[1])

    def check_backend(self) -> None:
        """Check that the backend's Django cache exists, if it uses one.

        Raises:
            ValueError: naming the cache alias missing from ``CACHES``.
        """
        if isinstance(self.backend, SyncDjangoCache | AsyncDjangoCache):
            self.backend.check_cache_name()

    def unsafe_reason(self) -> str | None:
        """Why the backend cannot keep this limit exact, or None if it can.

        Raises:
            ValueError: the backend's Django cache is not in ``CACHES``.
        """
        if isinstance(self.backend, SyncDjangoCache | AsyncDjangoCache):
            self.check_backend()
            return self.backend.unsafe_reason()
        if isinstance(self.backend, MemoryBackend):
            return _MEMORY_UNSAFE
        return None

    def provide_response_specs(self) -> dict[str, dict[str, Any]]:
        """The OpenAPI response this throttle can answer with: a 429.

        Returns:
            ``{"429": response object}``, its schema a reference to
            ``ErrorModel``, with the headers of every provider.
        """
        response: dict[str, Any] = {
            "description": "Raised when throttling rate was hit",
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/ErrorModel"}
                }
            },
        }
        headers: dict[str, Any] = {}
        for provider in self.response_headers:
            headers.update(provider.provide_headers_specs())
        if headers:
            response["headers"] = dict(sorted(headers.items()))
        return {"429": response}

    def __repr__(self) -> str:
        backend = repr(self.backend)
        if len(backend) > _MAX_BACKEND_REPR:
            backend = f"{type(self.backend).__name__}(...)"
        return (
            f"{type(self).__name__}({self.limit.max_requests}, "
            f"{self.limit.duration}, cache_key={self.cache_key!r}, "
            f"backend={backend}, algorithm={self.algorithm!r})"
        )


class _Batch:
    """Calls that one script call decides, all or nothing: same backend,
    algorithm and clock, and on Redis Cluster the same identity too, whose
    keys share a hash tag and so a slot."""

    def __init__(self, first: ThrottleCall) -> None:
        self.throttle = first.throttle
        self.calls = [first]

    @staticmethod
    def key(call: ThrottleCall) -> tuple[object, ...]:
        """Calls with equal keys go in one batch."""
        throttle = call.throttle
        tag = hash_tag(call.key) if throttle.backend.single_slot_calls else ""
        return (throttle.batch_identity, tag)

    def script_call(self) -> ScriptCall:
        clock = self.throttle.clock
        now_us = None if clock is None else microseconds(clock)
        limits = [call.throttle.limit for call in self.calls]
        args = self.throttle.algorithm.pack_args("hit", 1, now_us, limits)
        return self.throttle.script, [call.key for call in self.calls], args

    def outcomes(self, reply: Sequence[int]) -> list[ThrottleOutcome]:
        limits = [call.throttle.limit for call in self.calls]
        keys = [call.key for call in self.calls]
        return self._as_outcomes(decode_reply(limits, reply, keys))

    def fallback(
        self, error: BackendError, on_failure: OnFailure
    ) -> list[ThrottleOutcome]:
        """What the failure policy decides for these calls, the store failed.

        Raises:
            BackendError: ``error``, when the policy is ``"raise"``.
        """
        limits = [call.throttle.limit for call in self.calls]
        breaker = self.throttle.backend.breaker
        names = ", ".join(
            f"{call.throttle.cache_key.name} {call.key}" for call in self.calls
        )
        decision = guarded_failure(breaker, on_failure, limits, error, names)
        return self._as_outcomes(decision.limits, error)

    def _as_outcomes(
        self, decisions: Sequence[LimitDecision], error: BackendError | None = None
    ) -> list[ThrottleOutcome]:
        return [
            ThrottleOutcome(call.throttle, item, call.key, error)
            for call, item in zip(self.calls, decisions, strict=True)
        ]


def _backend_identity(backend: object) -> object:
    # Django cache backends are cheap handles on an alias: two of them on
    # one alias are one store, and belong in one script call.
    if isinstance(backend, SyncDjangoCache | AsyncDjangoCache):
        return (type(backend), backend.cache_name)
    return backend


def _batches(
    kind: type["BaseThrottle[Any]"], calls: Iterable[ThrottleCall]
) -> list[_Batch]:
    batches: dict[tuple[object, ...], _Batch] = {}
    for call in calls:
        if not isinstance(call.throttle, kind):
            raise TypeError(f"{kind.__name__} cannot run {call.throttle!r}")
        key = _Batch.key(call)
        batch = batches.get(key)
        if batch is None:
            batches[key] = _Batch(call)
        else:
            batch.calls.append(call)
    return list(batches.values())


def _by_backend(batches: Iterable[_Batch]) -> list[list[_Batch]]:
    """Batches grouped by store: each group costs one round trip (a pipeline
    on Redis), though each batch stays its own atomic script call."""
    groups: dict[object, list[_Batch]] = {}
    for batch in batches:
        groups.setdefault(batch.throttle.batch_identity[0], []).append(batch)
    return list(groups.values())


def _before_call(batches: Sequence[_Batch]) -> None:
    breaker = batches[0].throttle.backend.breaker
    if breaker is not None:
        breaker.before_call()


def _outcomes(
    batches: Sequence[_Batch], replies: Sequence[Sequence[int]]
) -> list[ThrottleOutcome]:
    breaker = batches[0].throttle.backend.breaker
    if breaker is not None:
        breaker.succeeded()
    return [
        outcome
        for batch, reply in zip(batches, replies, strict=True)
        for outcome in batch.outcomes(reply)
    ]


_STRICTEST_FIRST: tuple[OnFailure, ...] = ("raise", "deny", "allow")


def _fallback(
    batches: Sequence[_Batch], error: BackendError, default: OnFailure
) -> list[ThrottleOutcome]:
    """The failure policy's outcomes; throttles that share a failed store
    and disagree on the policy get the strictest of theirs."""
    chosen = {
        call.throttle.on_failure or default for batch in batches for call in batch.calls
    }
    policy = next(item for item in _STRICTEST_FIRST if item in chosen)
    return [outcome for batch in batches for outcome in batch.fallback(error, policy)]


class SyncThrottle(BaseThrottle[SyncBackend]):
    """A throttle for sync views; see ``BaseThrottle`` for the arguments."""

    _backend_type = SyncBackend
    _default_backend = _default_sync_backend

    @classmethod
    def hit_all(
        cls, calls: Iterable[ThrottleCall], *, on_failure: OnFailure = "raise"
    ) -> list[ThrottleOutcome]:
        """Count one hit on every call: one round trip per shared backend.

        Args:
            calls: the calls of one stage.
            on_failure: the policy for throttles that set none.

        Returns:
            One outcome per call, grouped by script call.

        Raises:
            TypeError: a call belongs to another kind of throttle.
            BackendError: the store failed and the policy is ``"raise"``.
        """
        outcomes: list[ThrottleOutcome] = []
        for batches in _by_backend(_batches(cls, calls)):
            backend = cast(SyncBackend, batches[0].throttle.backend)
            try:
                _before_call(batches)
                replies = backend.run_scripts(
                    [batch.script_call() for batch in batches]
                )
            except BackendError as error:
                outcomes.extend(_fallback(batches, error, on_failure))
                continue
            outcomes.extend(_outcomes(batches, replies))
        return outcomes


class AsyncThrottle(BaseThrottle[AsyncBackend]):
    """A throttle for async views; see ``BaseThrottle`` for the arguments."""

    _backend_type = AsyncBackend
    _default_backend = _default_async_backend

    @classmethod
    async def hit_all(
        cls, calls: Iterable[ThrottleCall], *, on_failure: OnFailure = "raise"
    ) -> list[ThrottleOutcome]:
        """Count one hit on every call: one round trip per shared backend."""
        outcomes: list[ThrottleOutcome] = []
        for batches in _by_backend(_batches(cls, calls)):
            backend = cast(AsyncBackend, batches[0].throttle.backend)
            script_calls = [batch.script_call() for batch in batches]
            try:
                _before_call(batches)
                replies = await backend.arun_scripts(script_calls)
            except BackendError as error:
                outcomes.extend(_fallback(batches, error, on_failure))
                continue
            outcomes.extend(_outcomes(batches, replies))
        return outcomes


def headers_for(outcomes: Iterable[ThrottleOutcome]) -> dict[str, str]:
    """The headers of ``outcomes``: each provider over its throttles' decisions.

    Equal providers of several throttles make one set of headers, so
    ``RateLimitIETFDraft`` lists every throttle that uses it.
    """
    # Providers compare by value, so equal ones of several throttles meet
    # in one entry; dicts keep the order they were first seen in.
    groups: dict[BaseResponseHeadersProvider, list[LimitDecision]] = {}
    for outcome in outcomes:
        for provider in outcome.throttle.response_headers:
            groups.setdefault(provider, []).append(outcome.decision)
    headers: dict[str, str] = {}
    for provider, decisions in groups.items():
        headers.update(provider.provide_headers(decisions))
    return headers


def record_outcomes(request: Any, outcomes: Iterable[ThrottleOutcome]) -> None:
    """Keep ``outcomes`` on ``request``, for ``ThrottlingReport``."""
    recorded: list[ThrottleOutcome] | None = getattr(request, _OUTCOMES_ATTRIBUTE, None)
    if recorded is None:
        setattr(request, _OUTCOMES_ATTRIBUTE, list(outcomes))
    else:
        recorded.extend(outcomes)


def forget_outcomes(request: Any) -> None:
    """Start ``request`` over, before its throttles run."""
    setattr(request, _OUTCOMES_ATTRIBUTE, [])


class ThrottlingReport:
    """The rate-limit headers of every throttle the request went through.

    Reads what the request's throttles already decided, so it asks no cache
    anything. Throttles that a cache key skipped, or that a stage never
    reached, are not in it.

    Args:
        request: the request being served.
    """

    def __init__(self, request: Any) -> None:
        self.outcomes: tuple[ThrottleOutcome, ...] = tuple(
            getattr(request, _OUTCOMES_ATTRIBUTE, ())
        )

    def report(self) -> dict[str, str]:
        """The headers, for sync views."""
        return headers_for(self.outcomes)

    async def areport(self) -> dict[str, str]:
        """The headers, for async views."""
        return headers_for(self.outcomes)
