"""Where a ``luathrottle.drf`` throttle keeps its state.

In order: the class's ``backend``; else DRF's ``cache`` attribute, when a
class sets one of ``settings.CACHES`` (``cache = caches["alternate"]``);
else the ``LUATHROTTLE_DRF_BACKEND`` setting; else Django's ``default``
cache, as DRF's own throttles do.
"""

import functools
import threading
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.utils.connection import ConnectionProxy

try:
    from rest_framework import throttling as _drf
except ImportError as exc:  # pragma: no cover - luathrottle.drf says which extra
    raise ImportError(
        "luathrottle.drf needs Django REST framework: pip install 'luathrottle[drf]'"
    ) from exc

from luathrottle.backends import SyncBackend
from luathrottle.backends.django_cache import SyncDjangoCache

__all__ = ["backend_of"]

#: DRF's own ``cache`` attribute: a class that keeps it did not choose.
_DRF_CACHE = _drf.SimpleRateThrottle.cache

#: Cache objects already matched to their alias, kept with the object so
#: that its id is not reused; Django builds one object per alias and thread,
#: so an object set on a class in one thread is matched once, in the thread
#: that set it or any other that first asks. Forgotten all at once past
#: this many, so that caches set per instance cannot grow it without end.
_ALIASES: dict[int, tuple[object, str]] = {}
_MOST_ALIASES = 64
_ALIASES_LOCK = threading.Lock()


def backend_of(throttle: Any) -> SyncBackend:
    """The store of ``throttle``.

    Raises:
        ImproperlyConfigured: naming ``cache`` or ``LUATHROTTLE_DRF_BACKEND``
            when it names no store.
    """
    cls = type(throttle)
    if cls.backend is not None:
        backend: SyncBackend = cls.backend
        return backend
    cache = throttle.cache
    if cache is not _DRF_CACHE:
        return _cache_backend(_alias_of(cache, cls.__name__))
    return _configured_backend()


@functools.cache
def _cache_backend(alias: str) -> SyncDjangoCache:
    return SyncDjangoCache(alias)


def _configured_backend() -> SyncBackend:
    chosen = getattr(settings, "LUATHROTTLE_DRF_BACKEND", "default")
    if isinstance(chosen, str):
        return _cache_backend(chosen)
    if isinstance(chosen, SyncBackend):
        return chosen
    raise ImproperlyConfigured(
        "LUATHROTTLE_DRF_BACKEND must be a cache alias or a sync backend such "
        f"as SyncRedis(client), got {chosen!r}"
    )


def _alias_of(cache: object, name: str) -> str:
    if isinstance(cache, ConnectionProxy):
        alias: str = cache.__dict__["_alias"]
        return alias
    found = _ALIASES.get(id(cache))
    if found is not None and found[0] is cache:
        return found[1]
    for alias in settings.CACHES:
        if caches[alias] is cache:
            with _ALIASES_LOCK:
                if len(_ALIASES) >= _MOST_ALIASES:
                    _ALIASES.clear()
                _ALIASES[id(cache)] = (cache, alias)
            return alias
    raise ImproperlyConfigured(
        f"{name}.cache must be a cache of settings.CACHES, as caches['alias'] "
        f"returns it, got {cache!r}; or set backend = SyncDjangoCache('alias')"
    )
