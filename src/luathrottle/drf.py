"""Django REST framework throttles, decided by luathrottle: port by import.

::

    # from rest_framework.throttling import AnonRateThrottle, UserRateThrottle
    from luathrottle.drf import AnonRateThrottle, UserRateThrottle

The classes subclass DRF's own and keep its contract: ``allow_request()``
and ``wait()``, ``scope``/``rate``/``throttle_scope``, rates from
``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``, ``get_cache_key()`` as the
override point, and ``DEFAULT_THROTTLE_CLASSES``. What changes:

- each decision is one script call, atomic on a Redis-backed cache or a
  Redis backend, so N processes admit exactly the limit;
- a denied request consumes nothing (DRF keeps appending to its history);
- ``wait()`` is the exact time until the next request fits, so DRF's
  ``Retry-After`` is exact to the second;
- when a view lists several of these throttles, the first
  ``allow_request()`` decides them all in one round trip, all or nothing,
  and the others read the outcome;
- ``RateLimitHeadersMixin`` or ``exception_handler`` add the IETF draft's
  ``RateLimit-Policy`` and ``RateLimit`` headers (or ``X-RateLimit-*``);
- when the store fails and the failure policy denies, the request gets a
  503 (``StoreUnavailable``), as at every other door, not a 429.

State lives in Django's ``default`` cache, as DRF's does, or in the cache
a class names with DRF's ``cache = caches["alias"]``. The
``LUATHROTTLE_DRF_BACKEND`` setting (a cache alias or a sync backend) or a
``backend`` class attribute picks another store. Time is the store's,
unless a class overrides DRF's ``timer`` (as DRF's tests do) or sets
``clock``: either is read at each decision. Windows are luathrottle's
algorithms (``SimpleRate()`` by default, ``LeakyBucket()`` through the
``algorithm`` class attribute), not DRF's sliding log.
"""

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

try:
    from rest_framework import throttling as _drf
    from rest_framework.settings import api_settings
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "luathrottle.drf needs Django REST framework: pip install 'luathrottle[drf]'"
    ) from exc

from luathrottle import BaseThrottleAlgorithm, LimitDecision
from luathrottle._answers import check_problem_json
from luathrottle._checks import Check, Counting, Verdict, weak_request
from luathrottle._counting import (
    CountWhen,
    check_count_when,
    spent_by,
)
from luathrottle._drf_answers import (
    STATE_ATTRIBUTE,
    RateLimitHeadersMixin,
    State,
    StoreUnavailable,
    exception_handler,
    rate_limit_headers,
)
from luathrottle._drf_stores import backend_of
from luathrottle._drf_time import on_time, reading
from luathrottle._engine import decide
from luathrottle._failures import OnFailure
from luathrottle._providers import DRAFT_PROVIDERS
from luathrottle.backends import SyncBackend
from luathrottle.django._conf import get_config
from luathrottle.django.cache_keys import BaseThrottleCacheKey
from luathrottle.django.throttles import SyncThrottle
from luathrottle.headers import BaseResponseHeadersProvider
from luathrottle.rates import parse_drf_rate

#: DRF's own, re-exported so that every name of ``rest_framework.throttling``
#: ports by import: a throttle of your own that decides in Python.
BaseThrottle = _drf.BaseThrottle

__all__ = [
    "AnonRateThrottle",
    "BaseThrottle",
    "RateLimitHeadersMixin",
    "ScopedRateThrottle",
    "SimpleRateThrottle",
    "StoreUnavailable",
    "UserRateThrottle",
    "exception_handler",
    "rate_limit_headers",
]

#: Every throttle of this module counts within this scope; DRF's cache keys
#: already hold the throttle's scope and the client's identity.
_SCOPE = "drf"
_MAX_NAME = 100


class _GivenKey(BaseThrottleCacheKey):
    """The identity is DRF's cache key, computed before the call."""

    def __init__(self, name: str) -> None:
        super().__init__(runs_before_auth=False, name=name)

    def __call__(self, request: Any) -> str | None:
        """``request`` is the cache key ``get_cache_key()`` returned."""
        return request if isinstance(request, str) else None


#: DRF builds its throttles anew for every request; the luathrottle throttle
#: behind each (its key frames included) is built once per class, rate,
#: name and store, and kept for up to this many, forgotten all at once past
#: it, so that rates made from request data (an overridden ``get_rate``)
#: cannot grow them without end.
_REMEMBERED = 256
_INNER: dict[tuple[object, ...], SyncThrottle] = {}


class SimpleRateThrottle(_drf.SimpleRateThrottle):  # type: ignore[misc]
    """DRF's ``SimpleRateThrottle``, decided by one atomic script call.

    Subclasses override ``get_cache_key(request, view)`` as with DRF, and set
    ``scope`` or ``rate``. Class attributes beyond DRF's:

    Attributes:
        backend: a sync backend (``SyncDjangoCache("alias")``,
            ``SyncRedis(client)``); None (default) means the
            ``LUATHROTTLE_DRF_BACKEND`` setting, else the ``default`` cache.
        algorithm: ``SimpleRate()`` when None (default), or ``LeakyBucket()``.
        clock: returns the time in seconds, read at each decision, as
            DRF's ``timer`` is (override either, not both); a reading below
            1_700_000_000 counts from that instant, so a clock may start at
            0. None uses the store's clock, unless ``timer`` is overridden.
            Set it with ``staticmethod``. Throttles of one view that count
            ``"all_or_nothing"`` must read one time.
        on_failure: ``"allow"``, ``"deny"`` or ``"raise"`` when the store
            fails; None (default) follows ``LUATHROTTLE["on_failure"]``.
        response_headers: the providers ``RateLimitHeadersMixin`` and
            ``exception_handler`` use: ``(RateLimitIETFDraft(current_draft=
            True), RetryAfter())`` by default, the IETF draft's fields.
        cache_denials: as for ``luathrottle.django.SyncThrottle``: True or a
            number of identities to answer remembered denials without the
            store; False (default) for none.
        shadow: decide and count as ever, but admit every request: as for
            ``luathrottle.django.SyncThrottle`` (and as
            ``LUATHROTTLE["shadow"]`` does for every throttle).
        near_limit: as for ``luathrottle.django.SyncThrottle``.
        counting: ``"each"`` (default), DRF's own semantics: every throttle
            that admits a request counts it, even when another throttle
            denies it; ``"all_or_nothing"``: a denied request costs the
            throttles it shares a script call with nothing.
        problem_json: with ``exception_handler``, answer a request this
            throttle refused with an RFC 9457 ``application/problem+json``
            body rather than DRF's; False by default.
        penalty: seconds for which a client this throttle denies is denied
            every request, as for ``luathrottle.django.SyncThrottle``; None
            (default) for none.
        count_when: ``count_when(response) -> bool``, set with
            ``staticmethod``: on a view with ``RateLimitHeadersMixin``, an
            admitted request whose response does not count is refunded (for
            a login view, ``lambda r: r.status_code in (401, 403)``); None
            (default): every request counts.
    """

    backend: ClassVar[SyncBackend | None] = None
    algorithm: ClassVar[BaseThrottleAlgorithm | None] = None
    clock: ClassVar[Callable[[], float] | None] = None
    on_failure: ClassVar[OnFailure | None] = None
    cache_denials: ClassVar[bool | int] = False
    shadow: ClassVar[bool] = False
    near_limit: ClassVar[float | None] = None
    counting: ClassVar[Counting] = "each"
    penalty: ClassVar[float | None] = None
    count_when: ClassVar[CountWhen | None] = None
    problem_json: ClassVar[bool] = False
    response_headers: ClassVar[Sequence[BaseResponseHeadersProvider]] = DRAFT_PROVIDERS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_count_when(cls.count_when, f"{cls.__module__}.{cls.__qualname__}")
        check_problem_json(cls.problem_json)

    #: This throttle's limit's decision for the last request, or None when
    #: the throttle did not apply to it.
    decision: LimitDecision | None = None

    def parse_rate(self, rate: str | None) -> tuple[int | None, int | None]:
        """``rate`` as ``(num_requests, duration)``, in luathrottle's forms
        (``"5/2h"``, ``"100/10s"``) as well as DRF's; None for no rate.

        Raises:
            ImproperlyConfigured: naming the rate and the throttle's scope.
        """
        if rate is None:
            return (None, None)
        try:
            return parse_drf_rate(rate)
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"{type(self).__name__} (scope {self.scope!r}) rate {rate!r}: {exc}"
            ) from exc

    @property
    def THROTTLE_RATES(self) -> dict[str, str | None]:  # noqa: N802 - DRF's name
        """``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``, read when needed
        (DRF reads it once at import), so ``override_settings`` applies.
        A subclass may set its own dict instead, as with DRF."""
        rates: dict[str, str | None] = api_settings.DEFAULT_THROTTLE_RATES
        return rates

    def allow_request(self, request: Any, view: Any) -> bool:
        """Whether ``request`` may proceed; counts it when every throttle of
        the view admits it, and nothing otherwise.

        Raises:
            StoreUnavailable: the store failed and the policy denies.
        """
        verdict = _verdict(self, request, view)
        self.decision = None if verdict is None else verdict.decision.limits[0]
        if self.decision is None or self.decision.allowed:
            return True
        if verdict is not None and verdict.error is not None:
            raise StoreUnavailable(self.decision.retry_after)
        return False

    def wait(self) -> float | None:
        """Seconds until the denied request would fit, or None."""
        return None if self.decision is None else self.decision.retry_after

    def luathrottle_key(self, request: Any, view: Any) -> str | None:
        """DRF's cache key for ``request``, or None when this throttle does
        not apply; sets ``key`` as DRF does. No I/O."""
        if self.rate is None:
            return None
        key = self.get_cache_key(request, view)
        if key is not None and not isinstance(key, str):
            raise TypeError(
                f"{type(self).__name__}.get_cache_key() must return a str or "
                f"None, got {type(key).__name__} {key!r}"
            )
        self.key = key
        return key

    def luathrottle_throttle(self) -> SyncThrottle:
        """The luathrottle throttle that decides this one's rate.

        Raises:
            ImproperlyConfigured: the rate, backend or algorithm is invalid.
        """
        cls = type(self)
        backend = backend_of(self)
        name = self.scope if _is_name(self.scope) else cls.__name__[:_MAX_NAME]
        signature = (cls, self.num_requests, self.duration, name, backend)
        inner = _INNER.get(signature)
        if inner is None:
            try:
                inner = SyncThrottle(
                    self.num_requests,
                    self.duration,
                    cache_key=_GivenKey(name),
                    backend=backend,
                    algorithm=cls.algorithm,
                    response_headers=cls.response_headers,
                    scope=_SCOPE,
                    on_failure=cls.on_failure,
                    cache_denials=cls.cache_denials,
                    shadow=cls.shadow,
                    near_limit=cls.near_limit,
                    counting=cls.counting,
                    penalty=cls.penalty,
                )
            except (TypeError, ValueError) as exc:
                raise ImproperlyConfigured(
                    f"{cls.__name__} (rate {self.rate!r}): {exc}"
                ) from exc
            if len(_INNER) >= _REMEMBERED:
                _INNER.clear()
            _INNER[signature] = inner
        return inner


def _is_name(scope: object) -> bool:
    return (
        isinstance(scope, str) and 0 < len(scope) <= _MAX_NAME and scope.isprintable()
    )


def _verdict(throttle: SimpleRateThrottle, request: Any, view: Any) -> Verdict | None:
    # The key first, as DRF does: a throttle without a rate or a key admits
    # whatever it is given, even what is not a request.
    key = throttle.luathrottle_key(request, view)
    if key is None or get_config().exempts(request):
        return None
    signature: tuple[object, ...] = (
        type(throttle),
        key,
        throttle.num_requests,
        throttle.duration,
    )
    state: State | None = getattr(request, STATE_ATTRIBUTE, None)
    if state is None or state.view is not view:
        state = State(view)
        setattr(request, STATE_ATTRIBUTE, state)
        pending = {signature: (throttle, key)}
        for other in _view_throttles(view):
            if other is throttle or not isinstance(other, SimpleRateThrottle):
                continue
            other_key = other.luathrottle_key(request, view)
            if other_key is not None:
                other_signature: tuple[object, ...] = (
                    type(other),
                    other_key,
                    other.num_requests,
                    other.duration,
                )
                pending.setdefault(other_signature, (other, other_key))
        _decide(state, pending, request)
    elif signature not in state.verdicts:
        _decide(state, {signature: (throttle, key)}, request)
    return state.verdicts[signature]


def _view_throttles(view: Any) -> list[Any]:
    get_throttles = getattr(view, "get_throttles", None)
    if not callable(get_throttles):
        return []
    return list(get_throttles())


def _decide(
    state: State,
    pending: dict[tuple[object, ...], tuple[SimpleRateThrottle, str]],
    request: Any,
) -> None:
    """One round trip per store for every pending throttle: under
    ``counting="each"`` (the default) every throttle that admits the
    request counts it, as DRF's throttles do; under ``"all_or_nothing"`` a
    request one throttle denies costs the others of its script call
    nothing."""
    config = get_config()
    # The verdicts stay on the request (``state``).
    seen = weak_request(request)
    checks: dict[tuple[object, ...], Check] = {}
    clocks: dict[float, Any] = {}
    times: list[tuple[str, float | None]] = []
    for signature, (throttle, key) in pending.items():
        inner = throttle.luathrottle_throttle()
        now = reading(throttle)
        if inner.counting == "all_or_nothing":
            times.append((type(throttle).__name__, now))
        check = inner.keyed(
            key, _SCOPE, inner.limit, request=seen, settings=config, door="drf"
        )
        checks[signature] = on_time(check, now, clocks)
    if len({now for _, now in times}) > 1:
        raise ImproperlyConfigured(
            'throttles that count "all_or_nothing" on one view must read one '
            "time, or one script call cannot decide them together; they read "
            + ", ".join(
                f"{name}: {'the store' if now is None else now}" for name, now in times
            )
        )
    verdicts = decide(list(checks.values()))
    state.verdicts.update(zip(checks, verdicts, strict=True))
    for (throttle, _), verdict in zip(pending.values(), verdicts, strict=True):
        # Read off the class: a plain function there takes the response.
        count_when = type(throttle).count_when
        if count_when is not None:
            state.spent.append((count_when, spent_by([verdict])))


class AnonRateThrottle(SimpleRateThrottle, _drf.AnonRateThrottle):  # type: ignore[misc]
    """DRF's ``AnonRateThrottle``: anonymous requests, by client address;
    scope ``"anon"``."""

    # Its own, as DRF's is: a scope set on SimpleRateThrottle is not its.
    scope = "anon"


class UserRateThrottle(SimpleRateThrottle, _drf.UserRateThrottle):  # type: ignore[misc]
    """DRF's ``UserRateThrottle``: by user id, or client address when
    anonymous; scope ``"user"``."""

    scope = "user"


class ScopedRateThrottle(SimpleRateThrottle, _drf.ScopedRateThrottle):  # type: ignore[misc]
    """DRF's ``ScopedRateThrottle``: the view's ``throttle_scope`` names the
    rate; views without one are not throttled."""

    def luathrottle_key(self, request: Any, view: Any) -> str | None:
        """Reads the view's scope and rate first, as DRF does."""
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return None
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().luathrottle_key(request, view)
