"""The Django-cache backends under the name the throttling chapter uses.

``from dmr.throttling.backends.django_cache import UnsafeCacheBackendWarning``
ports as ``from luathrottle.dmr.backends.django_cache import
UnsafeCacheBackendWarning``; these are the objects of
``luathrottle.backends.django_cache``.
"""

from luathrottle.backends.django_cache import (
    AsyncDjangoCache,
    SyncDjangoCache,
    UnsafeCacheBackendWarning,
)

__all__ = ["AsyncDjangoCache", "SyncDjangoCache", "UnsafeCacheBackendWarning"]
