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

``count_when=`` on a throttle counts only some outcomes, such as a login
endpoint's failures: the request is counted before the endpoint runs and
refunded afterwards unless ``count_when(response)`` says it counts. dmr
calls no throttle once the response exists, so ``MIDDLEWARE`` takes
``"luathrottle.dmr.CountWhenMiddleware"``, which does.
"""

from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, NamedTuple

try:
    from dmr.errors import ErrorType
    from dmr.exceptions import TooManyRequestsError
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
from luathrottle._answers import refusal
from luathrottle._checks import Check, Verdict
from luathrottle._counting import CountWhen, Pending, spent_by
from luathrottle._engine import adecide, decide
from luathrottle.backends import AsyncBackend, SyncBackend
from luathrottle.backends.django_cache import (
    AsyncDjangoCache,
    SyncDjangoCache,
    UnsafeCacheBackendWarning,
)
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import throttles as _lt
from luathrottle.django._conf import get_config
from luathrottle.django._outcomes import headers_for
from luathrottle.dmr._middleware import CountWhenMiddleware, pending_of
from luathrottle.dmr._twin import (
    RateLimitIETFDraft,
    RetryAfter,
    State,
    Twin,
    XRateLimit,
    recorded,
    request_state,
)
from luathrottle.headers import BaseResponseHeadersProvider

if TYPE_CHECKING:
    from dmr.controller import Controller
    from dmr.endpoint import Endpoint

__all__ = [
    "AsyncDjangoCache",
    "AsyncRedis",
    "AsyncThrottle",
    "BaseResponseHeadersProvider",
    "BaseThrottleAlgorithm",
    "BaseThrottleAsyncBackend",
    "BaseThrottleCacheKey",
    "BaseThrottleSyncBackend",
    "CountWhenMiddleware",
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


class _Stage(NamedTuple):
    """A stage to decide: the request's state, the checks, each check's
    ``count_when``, where refunds wait for the response, and whether the
    throttles are async."""

    state: State
    checks: list[Check]
    count_when: list[CountWhen | None]
    pending: Pending | None
    is_async: bool


def _stage_checks(
    throttle: Twin, endpoint: "Endpoint", controller: "Controller[Any]"
) -> list[tuple[Check, CountWhen | None]]:
    """The checks of every throttle of ``throttle``'s kind and stage, each
    with its throttle's ``count_when``."""
    before = throttle.cache_key.runs_before_auth
    checks: list[tuple[Check, CountWhen | None]] = []
    for index, item in enumerate(endpoint.metadata.throttling or ()):
        # dmr gives an endpoint throttles of its own kind only.
        if not isinstance(item, Twin) or item.cache_key.runs_before_auth != before:
            continue
        check = item.check(endpoint, controller, index)
        if check is not None:
            checks.append((check, item.count_when))
    return checks


def _stage(
    throttle: Twin, endpoint: "Endpoint", controller: "Controller[Any]"
) -> _Stage | None:
    """The stage of ``throttle`` to decide, when this throttle is the first
    of its stage to run and the stage has checks; else None: an earlier
    throttle decided the stage, or no key applies.

    Raises:
        ImproperlyConfigured: a throttle has a ``count_when`` and
            ``MIDDLEWARE`` lacks ``CountWhenMiddleware``.
    """
    state = request_state(controller.request, endpoint)
    before = throttle.cache_key.runs_before_auth
    if before in state.decided:
        return None
    state.decided.add(before)
    if get_config().exempts(controller.request):
        return None
    found = _stage_checks(throttle, endpoint, controller)
    if not found:
        return None
    whens = [count_when for _, count_when in found]
    needed = any(count_when is not None for count_when in whens)
    pending = pending_of(controller.request, needed)
    is_async = isinstance(throttle.inner, _lt.AsyncThrottle)
    return _Stage(state, [check for check, _ in found], whens, pending, is_async)


def _judge(stage: _Stage, verdicts: Sequence[Verdict], controller: Any) -> None:
    """Record the stage; raise dmr's 429 (or a 503 when the store failed and
    the policy denies) with the headers of the throttles that denied."""
    stage.state.verdicts.extend(verdicts)
    answer = refusal(
        (verdict.decision, verdict.check.source.response_headers)
        for verdict in verdicts
    )
    pending = stage.pending
    if answer is None:
        if pending is not None:
            for verdict, count_when in zip(verdicts, stage.count_when, strict=True):
                if count_when is not None:
                    hits = spent_by([verdict])
                    pending.hits.append((count_when, hits, stage.is_async))
        return
    if pending is not None:
        pending.refused = True
    if answer.status == HTTPStatus.SERVICE_UNAVAILABLE:
        raise APIError(
            controller.format_error(answer.message, error_type=ErrorType.ratelimit),
            status_code=HTTPStatus.SERVICE_UNAVAILABLE,
            headers=answer.headers,
        )
    raise TooManyRequestsError(headers=answer.headers)


class SyncThrottle(Twin, _DmrSyncThrottle):  # type: ignore[misc]
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
        count_when: ``count_when(response) -> bool``: a request whose
            response does not count is refunded once it is made, such as
            any but a 401 or 403 for a login endpoint; ``MIDDLEWARE`` needs
            ``"luathrottle.dmr.CountWhenMiddleware"``. None (default):
            every request counts.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    _inner_type = _lt.SyncThrottle

    def __call__(
        self, endpoint: "Endpoint", controller: "Controller[Any]", lock: Any
    ) -> None:
        """Decide this throttle's stage, unless an earlier throttle did.
        dmr's lock is not taken: every decision is atomic in the store.

        Raises:
            TooManyRequestsError: a throttle of the stage denied.
        """
        stage = _stage(self, endpoint, controller)
        if stage is not None:
            _judge(stage, decide(stage.checks), controller)


class AsyncThrottle(Twin, _DmrAsyncThrottle):  # type: ignore[misc]
    """dmr's ``AsyncThrottle``, decided by luathrottle; for async endpoints.
    Takes ``SyncThrottle``'s arguments, with ``AsyncDjangoCache``,
    ``AsyncRedis`` or ``MemoryBackend`` as the backend."""

    _inner_type = _lt.AsyncThrottle

    async def __call__(
        self, endpoint: "Endpoint", controller: "Controller[Any]", lock: Any
    ) -> None:
        """Decide this throttle's stage, unless an earlier throttle did."""
        stage = _stage(self, endpoint, controller)
        if stage is not None:
            _judge(stage, await adecide(stage.checks), controller)

    async def report_usage(  # type: ignore[override]
        self, endpoint: "Endpoint", controller: "Controller[Any]"
    ) -> dict[str, str]:
        """This throttle's headers for the request; no store is asked."""
        return Twin.report_usage(self, endpoint, controller)


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
        return headers_for(recorded(self.controller.request))

    async def areport(self) -> dict[str, str]:
        """The headers, for async endpoints."""
        return self.report()
