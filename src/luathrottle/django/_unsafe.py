"""The policy on unsafe caches, in one place.

A cache that cannot keep limits exact (``traits().unsafe_reason``) is
warned about, refused, or let be, as the first level that says so decides:
the handler (``@throttle(allow_unsafe_cache=...)``), the view class
(``throttling_allow_unsafe_cache``), then ``LUATHROTTLE["allow_unsafe_cache"]``
(True by default). True warns with ``UnsafeCacheBackendWarning``, False
raises ``ImproperlyConfigured``, None does not check; ``UNSET`` leaves the
choice to the next level out.
"""

import enum
import warnings
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from luathrottle.backends.django_cache import UnsafeCacheBackendWarning

__all__ = ["UNSET", "Policy", "check_policy", "enforce", "is_setting", "resolve"]


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
        warnings.warn(message, UnsafeCacheBackendWarning, stacklevel=4)
