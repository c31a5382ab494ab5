"""Signals for watching throttles at work, from every front door.

Both are sent by one observer of the engine (``luathrottle.add_observer``),
so every door sends them: Django views, concurrency throttles, DRF, dmr,
the ASGI middleware, the FastAPI dependency and ``Limiter`` itself. The
observer is added when the first receiver connects, so a process that
listens to neither pays nothing for them.

The sender is the class of the limiter or throttle that decided, and the
arguments are ``request`` (the door's request; None for ``Limiter``),
``throttle`` (the limiter or throttle), ``key_name`` (the deciding limit's
name, the cache key's name for a Django throttle, such as
``"RemoteAddr"``), ``state_key`` (the hashed name of the limit's state,
never the raw identity), ``decision`` (the deciding limit's
``LimitDecision``; None for a lease) and ``event`` (the whole
``luathrottle.DecisionEvent``).

``request_throttled``
    A hit was denied (by the store or the denial cache), or a concurrency
    limit refused a lease. Not sent for a would-be denial in shadow mode,
    which refuses nothing: observers see those as ``Outcome.SHADOW_DENIED``.
``store_failed``
    The store failed and the failure policy decided; also given ``error``,
    the ``BackendError``, and ``on_failure``, ``"allow"`` or ``"deny"``.
"""

import threading
from typing import Any

from django.dispatch import Signal

from luathrottle._events import DecisionEvent, Outcome, add_observer

__all__ = ["request_throttled", "store_failed"]

_THROTTLED = frozenset(
    {Outcome.DENIED, Outcome.DENIED_FROM_CACHE, Outcome.LEASE_REFUSED}
)
_FAILED = frozenset({Outcome.FAILED_OPEN, Outcome.FAILED_CLOSED})
_observing = threading.Lock()
_observed = False


class _Sender:
    """The observer that sends the signals."""

    def __call__(self, event: DecisionEvent) -> None:
        if event.outcome in _THROTTLED:
            signal, extra = request_throttled, {}
        elif event.outcome in _FAILED:
            policy = "allow" if event.outcome == Outcome.FAILED_OPEN else "deny"
            signal, extra = store_failed, {"error": event.error, "on_failure": policy}
        else:
            return
        signal.send(
            type(event.source),
            request=event.request,
            throttle=event.source,
            key_name=event.limit,
            state_key=event.key,
            decision=event.decision,
            event=event,
            **extra,
        )

    def tally_for(self, *labels: object) -> "_Ignored":
        """What the engine hands admitted hits to: they send no signal."""
        return _IGNORED


class _Ignored:
    """A tally that forgets what it is handed."""

    __slots__ = ("pending",)

    most = 1024

    def __init__(self) -> None:
        self.pending: list[float] = []

    def fold(self) -> None:
        del self.pending[:]


_IGNORED = _Ignored()


_send = _Sender()


class _ObservedSignal(Signal):
    """A signal that has the engine report to it once someone listens."""

    def connect(self, *args: Any, **kwargs: Any) -> None:
        global _observed
        super().connect(*args, **kwargs)
        with _observing:
            if not _observed:
                add_observer(_send)
                _observed = True


request_throttled = _ObservedSignal()
store_failed = _ObservedSignal()
