"""The Redis backends under the name the throttling chapter imports them by.

``from dmr.throttling.backends.redis import SyncRedis`` ports as
``from luathrottle.dmr.backends.redis import SyncRedis``; these are the
objects of ``luathrottle.backends.redis``.
"""

from luathrottle.backends.redis import AsyncRedis, SyncRedis

__all__ = ["AsyncRedis", "SyncRedis"]
