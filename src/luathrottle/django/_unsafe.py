"""The policy on unsafe caches, in one place.

A cache that cannot keep limits exact (``traits().unsafe_reason``) is
warned about, refused, or let be, as the first level that says so decides:
the handler (``@throttle(allow_unsafe_cache=...)``), the view class
(``throttling_allow_unsafe_cache``), then ``LUATHROTTLE["allow_unsafe_cache"]``
(True by default). True warns with ``UnsafeCacheBackendWarning``, once per
cache per process (and again after the settings change), with the fix in
its text; False raises ``ImproperlyConfigured``; None does not check.
``UNSET`` leaves the choice to the next level out.
"""

import enum
import warnings
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from luathrottle.backends.django_cache import UnsafeCacheBackendWarning

__all__ = [
    "UNSET",
    "Policy",
    "check_policy",
    "enforce",
    "is_setting",
    "resolve",
    "warn_once",
]

#: What the warning says to do about it.
_FIX = (
    "use a Redis-backed cache (Django's RedisCache, django-redis or "
    "django-valkey) for exact limits, or silence this with "
    "LUATHROTTLE = {'allow_unsafe_cache': None} (or allow_unsafe_cache=None "
    "on the throttle or view)"
)

#: Why each cache warned about in this process is unsafe: each warns once.
_warned: set[str] = set()


class _Unset(enum.Enum):
    UNSET = enum.auto()


#: An ``allow_unsafe_cache`` left unset: the next level out decides.
UNSET = _Unset.UNSET

#: A level's policy: True warns, False raises, None skips, UNSET defers.
Policy = bool | None | _Unset


def is_setting(value: object) -> bool:
    """Whether ``value`` is a policy the settings may hold (not UNSET)."""
    return value is True or value is False or value is None


def check_policy(value: object) -> Policy:
    """Validate a level's policy.

    Raises:
        TypeError: naming ``allow_unsafe_cache``.
    """
    if not is_setting(value) and value is not UNSET:
        raise TypeError(
            f"allow_unsafe_cache must be True, False or None, got {value!r}"
        )
    return value  # type: ignore[return-value]


def resolve(*levels: Policy, settings: bool | None) -> bool | None:
    """The first level that decides, innermost first, else ``settings``
    (``LUATHROTTLE["allow_unsafe_cache"]``)."""
    for level in levels:
        if level is not UNSET:
            return level
    return settings


def enforce(label: str, throttles: Iterable[Any], policy: bool | None) -> None:
    """Warn about, or refuse, the throttles of ``label`` whose store cannot
    keep limits exact.

    Raises:
        ImproperlyConfigured: one is unsafe and ``policy`` is False.
    """
    if policy is None:
        return
    for item in throttles:
        reason = item.unsafe_reason()
        if reason is None:
            continue
        message = f"{label}: {item!r}: {reason}"
        if policy is False:
            raise ImproperlyConfigured(f"{message} (allow_unsafe_cache is False)")
        # Points the warning at the code that declared the view.
        warn_once(message, reason, stacklevel=5)


def warn_once(message: str, reason: str, stacklevel: int) -> None:
    """Warn that a cache is unsafe, with the fix, unless this process has
    warned about it (``reason`` names the cache) since the settings last
    changed."""
    if reason in _warned:
        return
    _warned.add(reason)
    warnings.warn(
        f"{message}; {_FIX}", UnsafeCacheBackendWarning, stacklevel=stacklevel
    )


def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting in ("LUATHROTTLE", "CACHES"):
        _warned.clear()


setting_changed.connect(_forget, dispatch_uid="luathrottle.django.unsafe")
