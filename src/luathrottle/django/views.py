"""Throttled views: the ``throttle`` decorator and ``ThrottledView``.

Throttles come from three levels that join, and all must pass: settings
(``LUATHROTTLE["throttling"]``), the view class (``throttling``), and the
handler (``@throttle(...)``). Requests then go through the stages of
``luathrottle.django._pipeline``: before-auth throttles, auth, the rest.

When a store fails, the failure policy decides: ``"allow"`` lets the
request on, ``"deny"`` answers 503 (with ``Retry-After``), ``"raise"`` lets
the ``BackendError`` out. Denials and failures are sent as signals
(``luathrottle.django.signals``).

Everything that can be checked without a request is checked when the view
is built: mixing sync and async, objects that are not throttles, unknown
cache aliases, two throttles that would share a counter, unsafe caches
(``luathrottle.django._unsafe``).
"""

import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, ClassVar, TypeVar

from asgiref.sync import iscoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.views import View

from luathrottle._counting import CountWhen, check_count_when
from luathrottle.django import _unsafe
from luathrottle.django._conf import get_config
from luathrottle.django._pipeline import AnyAuth, Endpoint, arun, run
from luathrottle.django._validation import (
    Bound,
    check_auth,
    check_stores,
    check_throttles,
)
from luathrottle.django.concurrency import AsyncConcurrencyThrottle, ConcurrencyThrottle
from luathrottle.django.throttles import AsyncThrottle, SyncThrottle

__all__ = ["ThrottledView", "throttle"]

AnyThrottle = (
    SyncThrottle | AsyncThrottle | ConcurrencyThrottle | AsyncConcurrencyThrottle
)
_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class _Declaration:
    """What ``@throttle(...)`` said about one handler."""

    throttles: tuple[object, ...]
    auth: tuple[object, ...] | None
    allow_unsafe_cache: _unsafe.Policy
    headers_on_every_response: bool | None
    count_when: CountWhen | None = None


_NOTHING = _Declaration((), None, _unsafe.UNSET, None)


def _settings_policy(*levels: _unsafe.Policy) -> bool | None:
    return _unsafe.resolve(*levels, settings=get_config().allow_unsafe_cache)


def _label(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def _in_class_body(frame: FrameType) -> bool:
    """Whether ``frame``, the code applying the decorator, is a class body.

    A class body runs with its own namespace as locals, which already holds
    ``__qualname__`` before the class exists; functions run optimized, and
    modules with their globals as locals. The handler's own name says
    nothing: ``functools.wraps`` copies it, and a view taken from a class
    (``throttle(...)(Handlers.ping)``) keeps its class's.
    """
    if frame.f_code.co_flags & inspect.CO_OPTIMIZED:
        return False
    namespace = frame.f_locals
    return namespace is not frame.f_globals and "__qualname__" in namespace


def _build_function(func: _F, declaration: _Declaration) -> _F:
    label = _label(func)
    is_async = iscoroutinefunction(func)
    check_throttles(label, is_async, declaration.throttles)
    check_auth(label, is_async, declaration.auth or ())
    endpoint = Endpoint(
        label=label,
        is_async=is_async,
        bound=_bind(declaration.throttles, label),
        auth=declaration.auth or (),  # type: ignore[arg-type]
        use_settings=True,
        headers_on_every_response=bool(declaration.headers_on_every_response),
        count_when=declaration.count_when,
    )
    policy = _settings_policy(declaration.allow_unsafe_cache)
    _unsafe.enforce(label, (item.throttle for item in endpoint.bound), policy)
    return _wrap(func, endpoint, is_async)


def _wrap(func: _F, endpoint: Endpoint, is_async: bool) -> _F:
    if is_async:

        @functools.wraps(func)
        async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            return await arun(endpoint, request, lambda: func(request, *args, **kwargs))

        return async_view  # type: ignore[return-value]

    @functools.wraps(func)
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return run(endpoint, request, lambda: func(request, *args, **kwargs))

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
    allow_unsafe_cache: _unsafe.Policy = _unsafe.UNSET,
    headers_on_every_response: bool | None = None,
    count_when: CountWhen | None = None,
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
        count_when: ``count_when(response) -> bool``: a request whose
            response does not count is refunded after the view, to the
            windows it was counted in; for a login view, ``lambda r:
            r.status_code in (401, 403)``. None (default): every request
            counts.

    Returns:
        The decorator.

    Raises:
        TypeError: a bad argument. When the decorator is applied,
            ``ImproperlyConfigured`` names the view and what does not fit.
    """
    _unsafe.check_policy(allow_unsafe_cache)
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
        check_count_when(count_when, "throttle"),
    )

    def decorate(func: _F) -> _F:
        # A handler in a class body waits for its class (__set_name__ and
        # ThrottledView.__init_subclass__); anything else is a view now.
        if _in_class_body(sys._getframe(1)):
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
) -> Endpoint:
    label = _class_label(cls)
    handler_label = f"{label}.{name}"
    is_async = iscoroutinefunction(getattr(cls, name))
    declaration = cls._luathrottle_methods.get(name, _NOTHING)
    check_throttles(handler_label, is_async, class_throttles or ())
    check_throttles(handler_label, is_async, declaration.throttles)
    auth = tuple(cls.auth if declaration.auth is None else declaration.auth)
    check_auth(handler_label, is_async, auth)
    headers = declaration.headers_on_every_response
    return Endpoint(
        label=handler_label,
        is_async=is_async,
        bound=_bind(class_throttles or (), label)
        + _bind(declaration.throttles, handler_label),
        auth=auth,  # type: ignore[arg-type]
        use_settings=class_throttles is not None,
        headers_on_every_response=bool(
            cls.throttling_headers_on_every_response if headers is None else headers
        ),
        count_when=declaration.count_when,
    )


def _bind(throttles: Iterable[object], view_scope: str) -> tuple[Bound, ...]:
    # Only called on throttles that _check_throttles has accepted.
    return tuple(Bound(item, view_scope) for item in throttles)  # type: ignore[arg-type]


def _check_class_unsafe(
    cls: type["ThrottledView"], class_throttles: tuple[object, ...], fresh: set[str]
) -> None:
    # Inherited throttles were checked with the parent class.
    own = vars(cls)
    if "throttling" in own or "throttling_allow_unsafe_cache" in own:
        policy = _settings_policy(cls.throttling_allow_unsafe_cache)
        _unsafe.enforce(_class_label(cls), class_throttles, policy)
    for name in sorted(fresh):
        declaration = cls._luathrottle_methods[name]
        policy = _settings_policy(
            declaration.allow_unsafe_cache, cls.throttling_allow_unsafe_cache
        )
        label = f"{_class_label(cls)}.{name}"
        _unsafe.enforce(label, declaration.throttles, policy)


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
    throttling_allow_unsafe_cache: ClassVar[_unsafe.Policy] = _unsafe.UNSET
    throttling_headers_on_every_response: ClassVar[bool] = False
    _luathrottle_methods: ClassVar[dict[str, _Declaration]] = {}
    _luathrottle_endpoints: ClassVar[dict[str, Endpoint]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fresh = {
            name
            for name, value in vars(cls).items()
            if isinstance(value, _ThrottledMethod)
        }
        cls._luathrottle_methods = _collect_methods(cls)
        class_throttles = _class_throttling(cls)
        check_stores(_class_label(cls), class_throttles or ())
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
            return arun(endpoint, request, handle)  # type: ignore[arg-type]
        return run(endpoint, request, handle)
