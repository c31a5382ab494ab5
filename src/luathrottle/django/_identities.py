"""What a Django throttle counts a request against, and its scope."""

from typing import Any

from luathrottle.django.cache_keys import BaseThrottleCacheKey

__all__ = ["check_scope", "identity_of"]

_MAX_SCOPE = 200


def check_scope(scope: object) -> str | None:
    """A throttle's ``scope``: None, or 1 to 200 printable characters.

    Raises:
        TypeError, ValueError: naming ``scope``.
    """
    if scope is None:
        return None
    if not isinstance(scope, str):
        raise TypeError(f"scope must be a str, got {type(scope).__name__} {scope!r}")
    if not scope or len(scope) > _MAX_SCOPE or not scope.isprintable():
        raise ValueError(
            f"scope must be 1 to {_MAX_SCOPE} printable characters, got {scope!r}"
        )
    return scope


def identity_of(cache_key: BaseThrottleCacheKey, request: Any) -> str | None:
    """What ``cache_key`` reads from ``request``: a str, or None to skip.

    Raises:
        TypeError: the cache key returned something else than a str.
    """
    identity = cache_key(request)
    if identity is not None and not isinstance(identity, str):
        raise TypeError(
            f"{cache_key!r} returned {type(identity).__name__}; cache keys "
            "must return a str or None"
        )
    return identity
