"""The Redis backends under the name the throttling chapter imports them by.

``from dmr.throttling.backends.redis import SyncRedis`` ports as
``from luathrottle.django.backends.redis import SyncRedis``. The backends
live in ``luathrottle.backends.redis``; these are the same objects.
"""

from luathrottle.backends.redis import AsyncRedis, SyncRedis

__all__ = ["AsyncRedis", "SyncRedis"]
