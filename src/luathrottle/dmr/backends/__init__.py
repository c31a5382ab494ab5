"""Throttle backends under the names the throttling chapter imports them by.

``from dmr.throttling.backends import SyncDjangoCache`` ports as
``from luathrottle.dmr.backends import SyncDjangoCache``; the Redis backends
are in ``luathrottle.dmr.backends.redis``. These are the objects of
``luathrottle.django.backends``: see there for ``BaseThrottleSyncBackend``,
``BaseThrottleAsyncBackend`` and the chapter's ``CachedRateLimit``, which
has no counterpart.
"""

from luathrottle.django.backends import (
    AsyncBackend,
    AsyncDjangoCache,
    BaseThrottleAsyncBackend,
    BaseThrottleSyncBackend,
    SyncBackend,
    SyncDjangoCache,
)

__all__ = [
    "AsyncBackend",
    "AsyncDjangoCache",
    "BaseThrottleAsyncBackend",
    "BaseThrottleSyncBackend",
    "SyncBackend",
    "SyncDjangoCache",
]
