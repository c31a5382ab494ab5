"""Throttle backends under the names the throttling chapter imports them by.

``from dmr.throttling.backends import SyncDjangoCache`` ports as
``from luathrottle.django.backends import SyncDjangoCache``; the Redis
backends are in ``luathrottle.django.backends.redis``. These are the objects
of ``luathrottle.backends``, re-exported.

``BaseThrottleSyncBackend`` and ``BaseThrottleAsyncBackend`` are
``SyncBackend`` and ``AsyncBackend``: the classes a backend of your own
subclasses. Their methods differ from the chapter's ``get`` and ``incr``: a
backend here runs the algorithm's Lua script (``run_script``), since the
script, not Python, reads and updates the state. The chapter's
``CachedRateLimit`` has no counterpart, for the same reason.
"""

from luathrottle.backends.base import AsyncBackend, SyncBackend
from luathrottle.backends.django_cache import AsyncDjangoCache, SyncDjangoCache

#: The chapter's name for the base class of sync backends.
BaseThrottleSyncBackend = SyncBackend
#: The chapter's name for the base class of async backends.
BaseThrottleAsyncBackend = AsyncBackend

__all__ = [
    "AsyncBackend",
    "AsyncDjangoCache",
    "BaseThrottleAsyncBackend",
    "BaseThrottleSyncBackend",
    "SyncBackend",
    "SyncDjangoCache",
]
