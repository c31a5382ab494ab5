"""Django throttling over the Lua core.

Cache keys live in ``luathrottle.django.cache_keys``, authentication hooks
in ``luathrottle.django.auth``, header providers in
``luathrottle.django.headers``, algorithms in ``luathrottle.django.algorithms``
and backends in ``luathrottle.django.backends``: the modules of the throttling
chapter, with ``dmr.throttling`` renamed ``luathrottle.django``.
"""

from luathrottle.backends.django_cache import UnsafeCacheBackendWarning
from luathrottle.django.concurrency import AsyncConcurrencyThrottle, ConcurrencyThrottle
from luathrottle.django.throttles import AsyncThrottle, SyncThrottle, ThrottlingReport
from luathrottle.django.views import ThrottledView, throttle
from luathrottle.rates import Rate

__all__ = [
    "AsyncConcurrencyThrottle",
    "AsyncThrottle",
    "ConcurrencyThrottle",
    "Rate",
    "SyncThrottle",
    "ThrottledView",
    "ThrottlingReport",
    "UnsafeCacheBackendWarning",
    "throttle",
]
