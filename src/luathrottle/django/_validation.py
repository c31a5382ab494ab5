"""Checks a view's throttles and auth hooks when the view is built, and the
throttles bound to it, whose counters must not meet."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from luathrottle._text import indefinite
from luathrottle.django.auth import BaseAsyncAuth, BaseSyncAuth
from luathrottle.django.concurrency import (
    AsyncConcurrencyThrottle,
    BaseConcurrencyThrottle,
    ConcurrencyThrottle,
)
from luathrottle.django.throttles import AsyncThrottle, BaseThrottle, SyncThrottle

__all__ = ["Bound", "check_auth", "check_stores", "check_throttles", "counted_apart"]


@dataclass(frozen=True, slots=True)
class Bound:
    """A throttle on one view: ``view_scope`` keeps views' counters apart."""

    throttle: BaseThrottle[Any] | BaseConcurrencyThrottle[Any, Any]
    view_scope: str

    def counter(self) -> tuple[object, ...]:
        throttle = self.throttle
        if isinstance(throttle, BaseConcurrencyThrottle):
            return throttle.counter(self.view_scope)
        limit = throttle._limit
        # A throttle counts by its window, whatever its rate: two whose rate
        # callables may choose one window could share a counter; the same
        # callable twice surely would.
        window = (throttle.rate,) if limit is None else (limit.duration,)
        return (
            throttle.scope or self.view_scope,
            throttle.cache_key.name,
            *window,
            throttle.script.name,
        )


def _kind(is_async: bool) -> str:
    return "an async" if is_async else "a sync"


_THROTTLES = (
    "SyncThrottle, AsyncThrottle, ConcurrencyThrottle or AsyncConcurrencyThrottle"
)


def _expected(item: object, is_async: bool) -> type:
    """The kind of throttle a view of ``is_async`` takes in ``item``'s place."""
    if isinstance(item, BaseConcurrencyThrottle):
        return AsyncConcurrencyThrottle if is_async else ConcurrencyThrottle
    return AsyncThrottle if is_async else SyncThrottle


def check_stores(label: str, throttles: Iterable[object]) -> None:
    """Check that each of ``throttles`` is a throttle whose store exists,
    naming ``label``: a class-level throttle is checked with its class."""
    for item in throttles:
        if not isinstance(item, SyncThrottle | AsyncThrottle | BaseConcurrencyThrottle):
            raise ImproperlyConfigured(f"{label}: {item!r} is not a {_THROTTLES}")
        try:
            item.check_backend()
        except ValueError as exc:
            raise ImproperlyConfigured(f"{label}: {item!r}: {exc}") from exc


def check_throttles(label: str, is_async: bool, throttles: Iterable[object]) -> None:
    """``check_stores``, and that each throttle fits a view of its kind."""
    check_stores(label, throttles)
    for item in throttles:
        expected = _expected(item, is_async)
        if not isinstance(item, expected):
            raise ImproperlyConfigured(
                f"{label} is {_kind(is_async)} view, but {item!r} is "
                f"{indefinite(type(item).__name__)}; use {expected.__name__}"
            )


def check_auth(label: str, is_async: bool, hooks: Iterable[object]) -> None:
    expected = BaseAsyncAuth if is_async else BaseSyncAuth
    for hook in hooks:
        if not isinstance(hook, expected):
            raise ImproperlyConfigured(
                f"{label} is {_kind(is_async)} view, so its auth hooks must "
                f"be {expected.__name__} objects, got {hook!r}"
            )


def counted_apart(label: str, bound: Sequence["Bound"]) -> tuple["Bound", ...]:
    """The throttles of a view, each on a counter of its own.

    A throttle counts by its cache key name and window, so that a change of
    its rate keeps its count. Two of one view that share both (the
    chapter's class-level and method-level throttles, say) count apart by
    their rates instead: only a change of one of those rates starts its
    count afresh.

    Raises:
        ImproperlyConfigured: two would still share one counter.
    """
    shared: dict[tuple[object, ...], int] = {}
    for item in bound:
        shared[item.counter()] = shared.get(item.counter(), 0) + 1
    apart = tuple(
        _by_rate(item) if shared[item.counter()] > 1 else item for item in bound
    )
    seen: dict[tuple[object, ...], Bound] = {}
    for item in apart:
        other = seen.setdefault(item.counter(), item)
        if other is not item:
            raise ImproperlyConfigured(
                f"{label}: {other.throttle!r} and {item.throttle!r} would share "
                "one counter (a throttle counts by its cache key name and "
                "window, and by its rate beside another of both); give one of "
                "them another cache key name or scope"
            )
    return apart


def _by_rate(item: "Bound") -> "Bound":
    """``item`` counting by its rate too, beside a throttle of the same cache
    key name and window; a throttle of an explicit scope, a rate callable or
    a concurrency limit keeps its counter."""
    throttle = item.throttle
    if isinstance(throttle, BaseConcurrencyThrottle) or throttle.scope:
        return item
    limit = throttle._limit
    if limit is None:
        return item
    return Bound(throttle, f"{item.view_scope}\x00{limit.max_requests}")
