"""Django throttling over the Lua core.

Cache keys live in ``luathrottle.django.cache_keys``, authentication hooks
in ``luathrottle.django.auth``, header providers in ``luathrottle.headers``.
"""

from luathrottle.backends.django_cache import UnsafeCacheBackendWarning
from luathrottle.django.throttles import AsyncThrottle, SyncThrottle, ThrottlingReport
from luathrottle.django.views import ThrottledView, throttle
from luathrottle.rates import Rate

__all__ = [
    "AsyncThrottle",
    "Rate",
    "SyncThrottle",
    "ThrottledView",
    "ThrottlingReport",
    "UnsafeCacheBackendWarning",
    "throttle",
]
