"""Where limit state lives: Redis, the embedded memory store, Django's cache.

``SyncBackend`` and ``AsyncBackend`` are the contract every backend keeps.
The backends themselves are imported on first use, so that importing this
package loads neither lupa, nor redis-py, nor any Django cache code.
"""

import importlib
from typing import TYPE_CHECKING, Any

from luathrottle.backends.base import AsyncBackend, SyncBackend

if TYPE_CHECKING:
    from luathrottle.backends.django_cache import AsyncDjangoCache, SyncDjangoCache
    from luathrottle.backends.memory import MemoryBackend
    from luathrottle.backends.redis import AsyncRedis, SyncRedis

__all__ = [
    "AsyncBackend",
    "AsyncDjangoCache",
    "AsyncRedis",
    "MemoryBackend",
    "SyncBackend",
    "SyncDjangoCache",
    "SyncRedis",
]

_LAZY = {
    "AsyncDjangoCache": "django_cache",
    "AsyncRedis": "redis",
    "MemoryBackend": "memory",
    "SyncDjangoCache": "django_cache",
    "SyncRedis": "redis",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
