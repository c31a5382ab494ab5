"""The circuit breaker, and the guard every backend call goes through.

A backend that talks to a server carries a ``CircuitBreaker``. After
``failures`` failures in a row it opens, and for ``cool_off`` seconds calls
fail at once with ``CircuitOpenError``, without touching the store, so a dead
Redis costs microseconds per request instead of a socket timeout each. Then
one trial call goes through: if it succeeds the breaker closes, otherwise it
opens again.

The breaker is a context manager, and the base backends run every script
call inside it (``with self._guard: ...``), so each way a call can end
updates it: a reply closes it, and so does a ``ScriptError`` (the store
answered; one call's keys or script failed), any other ``BackendError``
(the store itself: connection, timeout, OOM, READONLY...) counts as a
failure, and a ``PoolExhaustedError`` (every connection busy through a
spike, the store not called) and anything else (a cancelled task, a
timeout around the call, a ``KeyboardInterrupt``, a bug) count as nothing
but give up the trial the call may have held, so that the next call tries
the store again.

Every change of a breaker is logged on the ``luathrottle`` logger, and
told to the watchers (``watch``), which metrics keep their gauges by.
"""

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Literal

from luathrottle.exceptions import (
    BackendError,
    CircuitOpenError,
    PoolExhaustedError,
    ScriptError,
)

__all__ = ["UNGUARDED", "CircuitBreaker", "Guard", "guard_for", "unwatch", "watch"]

logger = logging.getLogger("luathrottle")

State = Literal["closed", "open", "half-open"]
#: What hears of each change of a breaker: the breaker and its new state.
Watcher = Callable[["CircuitBreaker", State], object]
_watchers: tuple[Watcher, ...] = ()


def watch(watcher: Watcher) -> None:
    """Tell ``watcher`` of every change of every breaker in the process."""
    global _watchers
    _watchers = (*_watchers, watcher)


def unwatch(watcher: Watcher) -> None:
    """Stop telling ``watcher``; nothing happens if it was not watching."""
    global _watchers
    _watchers = tuple(item for item in _watchers if item is not watcher)


def _changed(breaker: "CircuitBreaker", state: State) -> None:
    for watcher in _watchers:
        try:
            watcher(breaker, state)
        except Exception:
            logger.exception("luathrottle breaker watcher %r failed; skipped", watcher)


class CircuitBreaker:
    """Stops calling a store that keeps failing, for a cool-off.

    Thread-safe, and never awaits, so one breaker serves threads and asyncio
    tasks alike. Backends use it as a context manager around each call to
    the store; ``before_call``, ``succeeded``, ``failed`` and ``released``
    are the same steps one at a time.

    Args:
        failures: failures in a row that open the breaker, at least 1.
        cool_off: seconds the breaker stays open before one trial call.
        clock: returns seconds; ``time.monotonic`` by default.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    def __init__(
        self,
        failures: int = 5,
        cool_off: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int):
            raise TypeError(f"failures must be an int, got {failures!r}")
        if failures < 1:
            raise ValueError(f"failures must be at least 1, got {failures!r}")
        if isinstance(cool_off, bool) or not isinstance(cool_off, int | float):
            raise TypeError(f"cool_off must be a number of seconds, got {cool_off!r}")
        if not 0 < cool_off <= 3600:
            raise ValueError(
                f"cool_off must be above 0 and at most 3600, got {cool_off!r}"
            )
        # Read once now: a clock that cannot be read would otherwise fail at
        # the first store failure, in the caller's request.
        reading = clock() if callable(clock) else None
        if isinstance(reading, bool) or not isinstance(reading, int | float):
            raise TypeError(
                f"clock must be a callable returning seconds, got {clock!r}"
            )
        self.failures = failures
        self.cool_off = float(cool_off)
        #: Names the store the breaker guards, in metrics; the first backend
        #: that takes the breaker names it.
        self.store = ""
        self._clock = clock
        self._lock = threading.Lock()
        self._failed = 0
        self._open_until: float | None = None
        self._trial = False

    @property
    def state(self) -> State:
        """``closed`` (calling), ``open`` (not calling) or ``half-open``
        (one trial call may go through, or is under way)."""
        with self._lock:
            if self._open_until is None:
                return "closed"
            if self._trial or self._clock() >= self._open_until:
                return "half-open"
            return "open"

    def retry_after(self) -> float:
        """Seconds until the breaker lets a trial call through; 0 if closed."""
        with self._lock:
            if self._open_until is None:
                return 0.0
            return max(self._open_until - self._clock(), 0.0)

    def before_call(self) -> None:
        """Let a call through, or refuse it while the breaker is open.

        Raises:
            CircuitOpenError: the breaker is open, or a trial call is under
                way; it carries the seconds until the next trial.
        """
        with self._lock:
            if self._open_until is None:
                return
            if self._trial or self._clock() < self._open_until:
                raise CircuitOpenError(max(self._open_until - self._clock(), 0.0))
            self._trial = True
        logger.info("luathrottle circuit breaker half-open: trying the store")
        _changed(self, "half-open")

    def succeeded(self) -> None:
        """Record a call that worked: the breaker closes."""
        with self._lock:
            was_open = self._open_until is not None
            self._failed, self._open_until, self._trial = 0, None, False
        if was_open:
            logger.warning("luathrottle circuit breaker closed: the store answers")
            _changed(self, "closed")

    def failed(self) -> None:
        """Record a call that failed: enough in a row open the breaker."""
        with self._lock:
            self._failed += 1
            opens = self._trial or self._failed >= self.failures
            if opens:
                self._open_until = self._clock() + self.cool_off
                self._trial = False
        if opens:
            logger.error(
                "luathrottle circuit breaker open for %.1f s after %d failures",
                self.cool_off,
                self._failed,
            )
            _changed(self, "open")

    def released(self) -> None:
        """Record a call that ended with no answer (cancelled, interrupted):
        it counts as nothing, but the trial it may have held is given up, so
        that the next call tries the store."""
        with self._lock:
            if not self._trial:
                return
            # Only a trial can be under way while the breaker is not closed;
            # a call let through before it opened may end here too, and then
            # frees a trial that is still running: a second trial is then
            # possible, which is harmless, whereas a trial never given up
            # would stop every call until the process restarts.
            self._trial = False
        logger.info("luathrottle circuit breaker: a trial call ended unanswered")

    def __enter__(self) -> None:
        # A closed breaker lets calls through without the lock: a call that
        # races the breaker opening is one more call to a failing store.
        if self._open_until is not None:
            self.before_call()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            if self._failed or self._open_until is not None:
                self.succeeded()
        elif isinstance(error, ScriptError):
            # The store answered; only this call's keys or script failed.
            if self._failed or self._open_until is not None:
                self.succeeded()
        elif isinstance(error, PoolExhaustedError):
            # The store was not called: busy connections say nothing of it.
            self.released()
        elif isinstance(error, BackendError):
            self.failed()
            error.retry_after = self.retry_after()
        else:
            self.released()

    def __repr__(self) -> str:
        return f"CircuitBreaker(failures={self.failures}, cool_off={self.cool_off})"


class _Unguarded:
    """The guard of a backend without a breaker: lets everything through."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


#: The guard of backends without a breaker.
UNGUARDED = _Unguarded()

Guard = CircuitBreaker | _Unguarded


def guard_for(breaker: object, store: str, *, default: bool = True) -> Guard:
    """Read a backend's ``breaker`` argument: None for a new default breaker
    (or none when ``default`` is False, as on Redis Cluster), False for none,
    or a ``CircuitBreaker``; a breaker not yet named is named ``store``.

    Raises:
        TypeError: naming ``breaker``.
    """
    if breaker is None:
        breaker = CircuitBreaker() if default else UNGUARDED
    if breaker is False:
        return UNGUARDED
    if not isinstance(breaker, CircuitBreaker | _Unguarded):
        raise TypeError(f"breaker must be a CircuitBreaker or False, got {breaker!r}")
    if isinstance(breaker, CircuitBreaker) and not breaker.store:
        breaker.store = store
    return breaker
