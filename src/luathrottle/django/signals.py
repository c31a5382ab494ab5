"""Signals for watching throttles at work.

Both are sent with the throttle's class as ``sender`` and these arguments:
``request``, ``throttle``, ``key_name`` (the cache key's name, such as
``"RemoteAddr"``), ``state_key`` (the hashed name of the limit's state,
never the raw identity: a key in the store, or for SimpleRate, which keeps
every limit of an identity in one hash, that hash up to the closing brace
and the field after it) and ``decision`` (the throttle's
``LimitDecision``).

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
