"""The seed example project without Redis: every cache is a LocMemCache.

Limits are exact within one process only, so serve this with one worker;
``luathrottle demo --seed`` uses it in-process. The project's Redis client
example falls back to its ``'redis'`` cache, in memory here.
"""

from seed_project import settings as _base
from seed_project.settings import *  # noqa: F403

CACHES = {
    alias: {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": alias,
    }
    for alias in _base.CACHES
}

# Per-process caches are unsafe across processes; this mode accepts it.
LUATHROTTLE = {**_base.LUATHROTTLE, "allow_unsafe_cache": None}
