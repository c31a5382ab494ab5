"""The Django-cache backends under the name the throttling chapter uses.

``from dmr.throttling.backends.django_cache import UnsafeCacheBackendWarning``
ports as ``from luathrottle.django.backends.django_cache import
UnsafeCacheBackendWarning``. Everything here lives in
``luathrottle.backends.django_cache``; these are the same objects.
"""

from luathrottle.backends.django_cache import (
    AsyncDjangoCache,
    SyncDjangoCache,
    UnsafeCacheBackendWarning,
)

__all__ = ["AsyncDjangoCache", "SyncDjangoCache", "UnsafeCacheBackendWarning"]
