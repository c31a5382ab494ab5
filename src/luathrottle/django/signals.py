"""Signals for watching throttles at work.

Both are sent with the throttle's class as ``sender`` and these arguments:
``request``, ``throttle``, ``key_name`` (the cache key's name, such as
``"RemoteAddr"``), ``state_key`` (the hashed key in the store, never the raw
identity) and ``decision`` (the throttle's ``LimitDecision``).

``request_throttled``
    A throttle denied a request (429).
``store_failed``
    The store failed and the failure policy decided; also given ``error``,
    the ``BackendError``, and ``on_failure``, ``"allow"`` or ``"deny"``.
"""

from django.dispatch import Signal

__all__ = ["request_throttled", "store_failed"]

request_throttled = Signal()
store_failed = Signal()
