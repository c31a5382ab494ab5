"""Where limit state lives: Redis, the embedded memory store, Django's cache."""

from luathrottle.backends.base import AsyncBackend, SyncBackend

__all__ = ["AsyncBackend", "SyncBackend"]
