"""Throttled views: the ``throttle`` decorator, ``ThrottledView``, and the
request flow both share.

A request goes through three stages, each of which can end it:

1. the throttles whose cache key ``runs_before_auth``, or 429;
2. authentication: the ``auth`` hooks, of which one must accept, or 401;
3. every other throttle, or 429.

When a store fails, the failure policy decides: ``"allow"`` lets the
request on, ``"deny"`` answers 503 (with ``Retry-After``), ``"raise"`` lets
the ``BackendError`` out. Denials and failures are sent as signals
(``luathrottle.django.signals``).

Throttles come from three levels that join, and all must pass: settings
(``LUATHROTTLE["throttling"]``), the view class (``throttling``), and the
handler (``@throttle(...)``). Each stage makes one script call per backend
and algorithm, and keeps its outcomes on the request for
``ThrottlingReport``.

Everything that can be checked without a request is checked when the view
is built: mixing sync and async, objects that are not throttles, unknown
cache aliases, two throttles that would share a counter, unsafe caches.
"""

import enum
import functools
import warnings
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from asgiref.sync import iscoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.views import View

from luathrottle._text import indefinite
from luathrottle.backends.django_cache import UnsafeCacheBackendWarning
from luathrottle.django.auth import BaseAsyncAuth, BaseSyncAuth
from luathrottle.django.conf import get_config
from luathrottle.django.signals import request_throttled, store_failed
from luathrottle.django.throttles import (
    AsyncThrottle,
    BaseThrottle,
    SyncThrottle,
    ThrottleCall,
    ThrottleOutcome,
    ThrottlingReport,
    forget_outcomes,
    headers_for,
    record_outcomes,
)
from luathrottle.rates import MAX_LIMITS

__all__ = [
    "NOT_AUTHENTICATED_BODY",
    "TOO_MANY_REQUESTS_BODY",
    "UNAVAILABLE_BODY",
    "UNSET",
    "ThrottledView",
    "throttle",
]

TOO_MANY_REQUESTS_BODY = b'{"detail":[{"msg":"Too many requests","type":"ratelimit"}]}'
UNAVAILABLE_BODY = (
    b'{"detail":[{"msg":"Rate limiting is unavailable","type":"ratelimit"}]}'
)
NOT_AUTHENTICATED_BODY = b'{"detail":[{"msg":"Not authenticated","type":"security"}]}'


class _Unset(enum.Enum):
    UNSET = enum.auto()


#: An ``allow_unsafe_cache`` left unset: the next level out decides.
UNSET = _Unset.UNSET

Policy = bool | None | _Unset
AnyThrottle = SyncThrottle | AsyncThrottle
AnyAuth = BaseSyncAuth | BaseAsyncAuth
_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class _Bound:
    """A throttle on one view: ``view_scope`` keeps views' counters apart."""

    throttle: BaseThrottle[Any]
    view_scope: str

    def call(self, request: HttpRequest) -> ThrottleCall | None:
        return self.throttle.call(request, self.view_scope)

    def counter(self) -> tuple[object, ...]:
        throttle = self.throttle
        return (
            throttle.scope or self.view_scope,
            throttle.cache_key.name,
            throttle.limit.max_requests,
            throttle.limit.duration,
            throttle.script.name,
        )


def _kind(is_async: bool) -> str:
    return "an async" if is_async else "a sync"


def _check_throttles(label: str, is_async: bool, throttles: Iterable[object]) -> None:
    expected = AsyncThrottle if is_async else SyncThrottle
    for item in throttles:
        if not isinstance(item, SyncThrottle | AsyncThrottle):
            raise ImproperlyConfigured(
                f"{label}: {item!r} is not a SyncThrottle or AsyncThrottle"
            )
        if not isinstance(item, expected):
            raise ImproperlyConfigured(
                f"{label} is {_kind(is_async)} view, but {item!r} is "
                f"{indefinite(type(item).__name__)}; use {expected.__name__}"
            )
        try:
            item.check_backend()
        except ValueError as exc:
            raise ImproperlyConfigured(f"{label}: {item!r}: {exc}") from exc


def _check_auth(label: str, is_async: bool, hooks: Iterable[object]) -> None:
    expected = BaseAsyncAuth if is_async else BaseSyncAuth
    for hook in hooks:
        if not isinstance(hook, expected):
            raise ImproperlyConfigured(
                f"{label} is {_kind(is_async)} view, so its auth hooks must "
                f"be {expected.__name__} objects, got {hook!r}"
            )


def _check_unsafe(label: str, bound: Iterable[_Bound], policy: bool | None) -> None:
    if policy is None:
        return
    for item in (entry.throttle for entry in bound):
        reason = item.unsafe_reason()
        if reason is None:
            continue
        message = f"{label}: {item!r}: {reason}"
        if policy is False:
            raise ImproperlyConfigured(f"{message} (allow_unsafe_cache is False)")
        warnings.warn(message, UnsafeCacheBackendWarning, stacklevel=4)


def _policy(*levels: Policy) -> bool | None:
    for level in levels:
        if not isinstance(level, _Unset):
            return level
    return get_config().allow_unsafe_cache


def _check_counters(label: str, bound: Sequence[_Bound]) -> None:
    seen: dict[tuple[object, ...], _Bound] = {}
    for item in bound:
        other = seen.setdefault(item.counter(), item)
        if other is not item:
            raise ImproperlyConfigured(
                f"{label}: {other.throttle!r} and {item.throttle!r} would share "
                "one counter; give one of them another cache key name"
            )


class _Endpoint:
    """Everything the requests of one handler go through."""

    def __init__(
        self,
        *,
        label: str,
        is_async: bool,
        bound: tuple[_Bound, ...],
        auth: tuple[AnyAuth, ...],
        use_settings: bool,
        headers_on_every_response: bool,
    ) -> None:
        self.label = label
        self.is_async = is_async
        self.bound = bound
        self.auth = auth
        self.use_settings = use_settings
        self.headers_on_every_response = headers_on_every_response
        self._stages: tuple[object, tuple[_Bound, ...], tuple[_Bound, ...]] | None = (
            None
        )
        self.stages()

    def stages(self) -> tuple[tuple[_Bound, ...], tuple[_Bound, ...]]:
        """The before-auth and after-auth throttles, settings-level first.

        Raises:
            ImproperlyConfigured: the settings do not fit this view.
        """
        config = get_config()
        if self._stages is None or self._stages[0] is not config:
            bound = self._settings_bound() + self.bound
            _check_counters(self.label, bound)
            before = tuple(b for b in bound if b.throttle.cache_key.runs_before_auth)
            after = tuple(b for b in bound if not b.throttle.cache_key.runs_before_auth)
            if max(len(before), len(after)) > MAX_LIMITS:
                raise ImproperlyConfigured(
                    f"{self.label}: throttling holds more than {MAX_LIMITS} "
                    "throttles for one stage, more than one script call decides"
                )
            self._stages = (config, before, after)
        return self._stages[1], self._stages[2]

    def _settings_bound(self) -> tuple[_Bound, ...]:
        if not self.use_settings:
            return ()
        throttles = get_config().throttles_for(is_async=self.is_async, view=self.label)
        _check_throttles(self.label, self.is_async, throttles)
        return tuple(_Bound(item, self.label) for item in throttles)

    def finish(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        """Add the report's headers when the view asks for them everywhere."""
        if self.headers_on_every_response:
            for name, value in ThrottlingReport(request).report().items():
                response[name] = value
        return response


def _json(body: bytes, status: int, headers: dict[str, str]) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type="application/json")
    for name, value in headers.items():
        response[name] = value
    return response


def _denied(
    request: HttpRequest, outcomes: Sequence[ThrottleOutcome]
) -> HttpResponse | None:
    record_outcomes(request, outcomes)
    notable = [
        item for item in outcomes if item.error is not None or not item.decision.allowed
    ]
    if not notable:
        return None
    _announce(request, notable)
    denied = [item for item in notable if not item.decision.allowed]
    if not denied:
        return None
    if any(item.error is not None for item in denied):
        return _json(UNAVAILABLE_BODY, 503, headers_for(denied))
    return _json(TOO_MANY_REQUESTS_BODY, 429, headers_for(denied))


def _announce(request: HttpRequest, notable: Sequence[ThrottleOutcome]) -> None:
    """Send a signal for each denial and each failure the policy decided."""
    for item in notable:
        arguments: dict[str, Any] = {
            "request": request,
            "throttle": item.throttle,
            "key_name": item.throttle.cache_key.name,
            "state_key": item.key,
            "decision": item.decision,
        }
        if item.error is None:
            request_throttled.send(type(item.throttle), **arguments)
        else:
            on_failure = "allow" if item.decision.allowed else "deny"
            store_failed.send(
                type(item.throttle),
                error=item.error,
                on_failure=on_failure,
                **arguments,
            )


def _calls(request: HttpRequest, stage: Sequence[_Bound]) -> list[ThrottleCall]:
    calls = (item.call(request) for item in stage)
    return [call for call in calls if call is not None]


def _sync_stage(request: HttpRequest, stage: Sequence[_Bound]) -> HttpResponse | None:
    calls = _calls(request, stage)
    if not calls:
        return None
    outcomes = SyncThrottle.hit_all(calls, on_failure=get_config().on_failure)
    return _denied(request, outcomes)


async def _async_stage(
    request: HttpRequest, stage: Sequence[_Bound]
) -> HttpResponse | None:
    calls = _calls(request, stage)
    if not calls:
        return None
    outcomes = await AsyncThrottle.hit_all(calls, on_failure=get_config().on_failure)
    return _denied(request, outcomes)


def _not_authenticated() -> HttpResponse:
    return _json(NOT_AUTHENTICATED_BODY, 401, {})


def _run(
    endpoint: _Endpoint, request: HttpRequest, view: Callable[[], HttpResponseBase]
) -> HttpResponseBase:
    forget_outcomes(request)
    before, after = endpoint.stages()
    response: HttpResponseBase | None = _sync_stage(request, before)
    if response is None and not _sync_authenticated(request, endpoint.auth):
        response = _not_authenticated()
    if response is None:
        response = _sync_stage(request, after)
    if response is None:
        response = view()
    return endpoint.finish(request, response)


def _sync_authenticated(request: HttpRequest, hooks: Sequence[AnyAuth]) -> bool:
    # Views accept only hooks of their kind (_check_auth), so the
    # isinstance tests below only narrow types.
    accepting = (hook(request) for hook in hooks if isinstance(hook, BaseSyncAuth))
    return not hooks or any(accepting)


async def _authenticated(request: HttpRequest, hooks: Sequence[AnyAuth]) -> bool:
    for hook in hooks:
        if isinstance(hook, BaseAsyncAuth) and await hook(request):
            return True
    return not hooks


async def _arun(
    endpoint: _Endpoint,
    request: HttpRequest,
    view: Callable[[], Awaitable[HttpResponseBase]],
) -> HttpResponseBase:
    forget_outcomes(request)
    before, after = endpoint.stages()
    # Each stage and hook is a coroutine to create and await, so the ones
    # with nothing to do are skipped.
    response: HttpResponseBase | None = None
    if before:
        response = await _async_stage(request, before)
    if (
        response is None
        and endpoint.auth
        and not await _authenticated(request, endpoint.auth)
    ):
        response = _not_authenticated()
    if response is None and after:
        if hasattr(request, "auser"):
            # After-auth keys read request.user synchronously; resolve it
            # here so they never query the database from the event loop.
            request.user = await request.auser()
        response = await _async_stage(request, after)
    if response is None:
        response = await view()
    return endpoint.finish(request, response)


@dataclass(frozen=True, slots=True)
class _Declaration:
    """What ``@throttle(...)`` said about one handler."""

    throttles: tuple[object, ...]
    auth: tuple[object, ...] | None
    allow_unsafe_cache: Policy
    headers_on_every_response: bool | None


_NOTHING = _Declaration((), None, UNSET, None)


def _label(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def _in_class_body(func: Callable[..., Any]) -> bool:
    parts = func.__qualname__.split(".")
    return len(parts) > 1 and parts[-2] != "<locals>"


def _build_function(func: _F, declaration: _Declaration) -> _F:
    label = _label(func)
    is_async = iscoroutinefunction(func)
    _check_throttles(label, is_async, declaration.throttles)
    _check_auth(label, is_async, declaration.auth or ())
    endpoint = _Endpoint(
        label=label,
        is_async=is_async,
        bound=_bind(declaration.throttles, label),
        auth=declaration.auth or (),  # type: ignore[arg-type]
        use_settings=True,
        headers_on_every_response=bool(declaration.headers_on_every_response),
    )
    _check_unsafe(label, endpoint.bound, _policy(declaration.allow_unsafe_cache))
    return _wrap(func, endpoint, is_async)


def _wrap(func: _F, endpoint: _Endpoint, is_async: bool) -> _F:
    if is_async:

        @functools.wraps(func)
        async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            return await _arun(
                endpoint, request, lambda: func(request, *args, **kwargs)
            )

        return async_view  # type: ignore[return-value]

    @functools.wraps(func)
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return _run(endpoint, request, lambda: func(request, *args, **kwargs))

    return view  # type: ignore[return-value]


class _ThrottledMethod:
    """A decorated handler, until its ``ThrottledView`` class takes it in."""

    def __init__(self, func: Callable[..., Any], declaration: _Declaration) -> None:
        self.func = func
        self.declaration = declaration

    def __set_name__(self, owner: type, name: str) -> None:
        if not issubclass(owner, ThrottledView):
            raise ImproperlyConfigured(
                f"@throttle on {owner.__module__}.{owner.__qualname__}.{name} "
                "needs the class to derive from luathrottle.django.ThrottledView"
            )


def throttle(
    *throttles: AnyThrottle,
    auth: Iterable[AnyAuth] | None = None,
    allow_unsafe_cache: Policy = UNSET,
    headers_on_every_response: bool | None = None,
) -> Callable[[_F], _F]:
    """Throttle a function view, or a handler of a ``ThrottledView``.

    Args:
        throttles: the handler's own throttles, which join the view class's
            and the settings' throttles; all must pass.
        auth: authentication hooks, one of which must accept the request;
            for a handler, replaces the class's ``auth``.
        allow_unsafe_cache: True warns about throttles on caches that cannot
            keep limits exact, False raises, None does not check; by default
            the class's ``throttling_allow_unsafe_cache``, else the settings'.
        headers_on_every_response: add the rate-limit headers of every
            throttle that ran to every response the view returns, as
            ``ThrottlingReport`` computes them.

    Returns:
        The decorator.

    Raises:
        TypeError: a bad argument. When the decorator is applied,
            ``ImproperlyConfigured`` names the view and what does not fit.
    """
    if not any(allow_unsafe_cache is value for value in (True, False, None, UNSET)):
        raise TypeError(
            "allow_unsafe_cache must be True, False or None, got "
            f"{allow_unsafe_cache!r}"
        )
    if not any(headers_on_every_response is value for value in (True, False, None)):
        raise TypeError(
            "headers_on_every_response must be a bool, got "
            f"{headers_on_every_response!r}"
        )
    declaration = _Declaration(
        tuple(throttles),
        None if auth is None else tuple(auth),
        allow_unsafe_cache,
        headers_on_every_response,
    )

    def decorate(func: _F) -> _F:
        if _in_class_body(func):
            return _ThrottledMethod(func, declaration)  # type: ignore[return-value]
        return _build_function(func, declaration)

    return decorate


def _class_throttling(cls: type["ThrottledView"]) -> tuple[object, ...] | None:
    value = cls.throttling
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise ImproperlyConfigured(
            f"{_class_label(cls)}.throttling must be a tuple of throttles or "
            f"None, got {value!r}"
        )
    return tuple(value)


def _class_label(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _collect_methods(cls: type["ThrottledView"]) -> dict[str, _Declaration]:
    methods = dict(cls._luathrottle_methods)
    for name, value in list(vars(cls).items()):
        if isinstance(value, _ThrottledMethod):
            if name not in cls.http_method_names:
                raise ImproperlyConfigured(
                    f"@throttle on {_class_label(cls)}.{name}, which handles no "
                    f"HTTP method ({', '.join(cls.http_method_names)})"
                )
            methods[name] = value.declaration
            setattr(cls, name, value.func)
        elif name in methods:
            del methods[name]
    return methods


def _handlers(cls: type["ThrottledView"]) -> list[str]:
    # View.options answers OPTIONS for every view; only handlers a view
    # defines are throttled.
    return [
        name
        for name in cls.http_method_names
        if getattr(cls, name, None) not in (None, getattr(View, name, None))
    ]


def _handler_endpoint(
    cls: type["ThrottledView"], name: str, class_throttles: tuple[object, ...] | None
) -> _Endpoint:
    label = _class_label(cls)
    handler_label = f"{label}.{name}"
    is_async = iscoroutinefunction(getattr(cls, name))
    declaration = cls._luathrottle_methods.get(name, _NOTHING)
    _check_throttles(handler_label, is_async, class_throttles or ())
    _check_throttles(handler_label, is_async, declaration.throttles)
    auth = tuple(cls.auth if declaration.auth is None else declaration.auth)
    _check_auth(handler_label, is_async, auth)
    headers = declaration.headers_on_every_response
    return _Endpoint(
        label=handler_label,
        is_async=is_async,
        bound=_bind(class_throttles or (), label)
        + _bind(declaration.throttles, handler_label),
        auth=auth,  # type: ignore[arg-type]
        use_settings=class_throttles is not None,
        headers_on_every_response=bool(
            cls.throttling_headers_on_every_response if headers is None else headers
        ),
    )


def _bind(throttles: Iterable[object], view_scope: str) -> tuple[_Bound, ...]:
    # Only called on throttles that _check_throttles has accepted.
    return tuple(_Bound(item, view_scope) for item in throttles)  # type: ignore[arg-type]


def _check_class_unsafe(
    cls: type["ThrottledView"], class_throttles: tuple[object, ...], fresh: set[str]
) -> None:
    # Inherited throttles were checked with the parent class.
    own = vars(cls)
    if "throttling" in own or "throttling_allow_unsafe_cache" in own:
        policy = _policy(cls.throttling_allow_unsafe_cache)
        _check_unsafe(_class_label(cls), _bind(class_throttles, ""), policy)
    for name in sorted(fresh):
        declaration = cls._luathrottle_methods[name]
        policy = _policy(
            declaration.allow_unsafe_cache, cls.throttling_allow_unsafe_cache
        )
        label = f"{_class_label(cls)}.{name}"
        _check_unsafe(label, _bind(declaration.throttles, label), policy)


class ThrottledView(View):
    """A class-based view whose handlers go through throttles and auth.

    Class attributes:
        throttling: the class-level throttles, joined with the settings'
            and each handler's; None turns the settings' throttles off for
            this view.
        auth: authentication hooks, one of which must accept the request.
        throttling_allow_unsafe_cache: the policy on unsafe caches for this
            view (see ``throttle``); unset by default.
        throttling_headers_on_every_response: add the rate-limit headers of
            every throttle that ran to every response.

    The class-level and settings-level throttles of one view count for all
    its handlers together; a handler's own throttles count for it alone.
    """

    throttling: ClassVar[Sequence[AnyThrottle] | None] = ()
    auth: ClassVar[Sequence[AnyAuth]] = ()
    throttling_allow_unsafe_cache: ClassVar[Policy] = UNSET
    throttling_headers_on_every_response: ClassVar[bool] = False
    _luathrottle_methods: ClassVar[dict[str, _Declaration]] = {}
    _luathrottle_endpoints: ClassVar[dict[str, _Endpoint]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fresh = {
            name
            for name, value in vars(cls).items()
            if isinstance(value, _ThrottledMethod)
        }
        cls._luathrottle_methods = _collect_methods(cls)
        class_throttles = _class_throttling(cls)
        cls._luathrottle_endpoints = {
            name: _handler_endpoint(cls, name, class_throttles)
            for name in _handlers(cls)
        }
        _check_class_unsafe(cls, class_throttles or (), fresh)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        """Run the handler through its throttles and auth."""
        method = (request.method or "").lower()
        endpoints = self._luathrottle_endpoints
        endpoint = endpoints.get(method) or (
            endpoints.get("get") if method == "head" else None
        )
        handle = functools.partial(super().dispatch, request, *args, **kwargs)
        if endpoint is None:
            return handle()
        if endpoint.is_async:
            # An async view's super().dispatch() returns the handler's awaitable.
            return _arun(endpoint, request, handle)  # type: ignore[arg-type]
        return _run(endpoint, request, handle)
