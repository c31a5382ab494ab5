"""Concurrency limits: at most N leases of one key held at once.

A concurrency limit bounds work in progress, not a rate. ``acquire(key)``
takes a lease, which the holder releases when its work is done; a holder
that crashes loses its slot when its lease runs out, and one that works
longer renews it. On every backend the leases of one key live in one
sorted set, of random lease ids scored by expiry in microseconds on the
store's clock (``lua/concurrency.lua``), and acquire, release and renew are
one script call each, atomic across processes on Redis.

A lease id is made before its acquire is sent, so an acquire that ends
without its answer (cancelled, interrupted, or failed after its call may
have reached the store) gives that id back before it raises or returns.
"""

import asyncio
import logging
import secrets
import time
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from luathrottle._denial_log import logging_denials
from luathrottle._engine import NOT_SENT, asend, send
from luathrottle._events import (
    DecisionEvent,
    Observer,
    Outcome,
    check_observers,
    check_shadow,
    observed,
    report,
)
from luathrottle._failures import OnFailure, check_on_failure
from luathrottle._keys import (
    KEY_PREFIX,
    check_prefix,
    check_scope,
    identity_digest,
    key_frame,
)
from luathrottle._lease_options import (
    check_lease,
    check_lease_store,
    check_max_in_flight,
    refuse_clock,
)
from luathrottle._leases import AsyncLease, Lease, _BaseLease
from luathrottle._switch import SWITCH
from luathrottle.backends.base import (
    AsyncBackend,
    ScriptCall,
    SyncBackend,
    check_backend_kind,
)
from luathrottle.backends.memory import _default_memory
from luathrottle.decision import Reason
from luathrottle.exceptions import BackendError
from luathrottle.scripts import Script, get_script

__all__ = ["AsyncConcurrencyLimiter", "AsyncLease", "ConcurrencyLimiter", "Lease"]

logger = logging.getLogger("luathrottle")

_BackendT = TypeVar("_BackendT", SyncBackend, AsyncBackend)
_LeaseT = TypeVar("_LeaseT", bound=_BaseLease)


class _BaseConcurrencyLimiter(Generic[_BackendT]):
    _backend_type: type[SyncBackend] | type[AsyncBackend]
    #: The front door its decisions' events name.
    _door: ClassVar[str] = "concurrency"

    def __init__(
        self,
        max_in_flight: int,
        *,
        lease: float,
        backend: _BackendT | None = None,
        clock: None = None,
        prefix: str = KEY_PREFIX,
        on_failure: OnFailure = "raise",
        scope: str = "",
        observers: Iterable[Observer] | None = None,
        shadow: bool = False,
    ) -> None:
        self.max_in_flight = check_max_in_flight(max_in_flight)
        self.lease_ms = check_lease(lease)
        self.lease = self.lease_ms / 1000
        self.backend: _BackendT = _default_memory() if backend is None else backend
        check_backend_kind(self.backend, self._backend_type, type(self).__name__)
        check_lease_store(self.backend.traits(), type(self).__name__)
        refuse_clock(clock, type(self).__name__)
        self.prefix = check_prefix(prefix)
        self.on_failure = check_on_failure(on_failure)
        self.script: Script = get_script("concurrency")
        self.observers = check_observers(observers)
        self.shadow = check_shadow(shadow)
        counter = f"{self.max_in_flight}/{self.lease_ms}ms"
        self._head, self._tail = key_frame(
            self.prefix, self.script, check_scope(scope), counter
        )
        self._limits = (str(self.max_in_flight), str(self.lease_ms * 1000))
        self._name = f"{self.max_in_flight} in flight"

    def state_key(self, key: str) -> str:
        """The hashed key of ``key``'s lease set.

        Raises:
            TypeError, ValueError: naming ``key``.
        """
        # The empty string is an identity like any other, as for Limiter.
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, got {type(key).__name__} {key!r}")
        return self._head + identity_digest(key) + self._tail

    def _call(self, mode: str, state_key: str, lease_id: str) -> ScriptCall:
        # No time: the script reads the store's own.
        return (self.script, [state_key], [mode, lease_id, "", *self._limits])

    def _replied(
        self,
        lease: _BaseLease,
        mode: str,
        reply: Sequence[int],
        latency: float | None,
    ) -> bool:
        _log_foreign(lease.key, reply)
        if mode == "renew" and reply[0] != 1:
            # Expired, so the store forgot it: nothing is held any more.
            lease.released = True
        if mode == "release" and reply[0] == 1 and latency is not None:
            self._report(lease, Outcome.LEASE_RELEASED, latency, int(reply[1]))
        return reply[0] == 1

    def _report(
        self,
        lease: _BaseLease,
        outcome: Outcome,
        latency: float | None,
        in_flight: int | None,
        request: Any = None,
    ) -> None:
        """Tell the observers of one decision on a lease."""
        remaining = None if in_flight is None else self.max_in_flight - in_flight
        event = DecisionEvent(
            door=self._door,
            limit=self._name,
            algorithm=self.script.name,
            outcome=outcome,
            remaining=remaining,
            retry_after=lease.retry_after,
            latency=latency,
            key=lease.key,
            error=lease.error,
            source=self,
            request=request,
        )
        report(event, None, self.observers)

    @staticmethod
    def _unlimited(lease: _LeaseT) -> _LeaseT:
        """``lease``, made without the store while limiting is switched off:
        granted, holding nothing."""
        lease.admit_unseen(Reason.DISABLED)
        return lease

    def _acquired(
        self, lease: _BaseLease, latency: float | None, request: Any, shadow: bool
    ) -> None:
        """Admit a refused lease in shadow mode, and tell the observers what
        an acquire decided when they listen (or log its refusal)."""
        refused = lease.reason is Reason.LIMIT_EXCEEDED
        if refused and shadow:
            lease.admit_unseen(Reason.SHADOW_DENIED)
        if latency is None and not (refused and logging_denials()):
            return
        if lease.reason is None:
            outcome = Outcome.ADMITTED
        elif lease.reason is Reason.SHADOW_DENIED:
            outcome = Outcome.SHADOW_DENIED
        elif refused:
            outcome = Outcome.LEASE_REFUSED
        else:
            outcome = Outcome.FAILED_OPEN if lease.allowed else Outcome.FAILED_CLOSED
        self._report(lease, outcome, latency, lease.in_flight, request)

    def _failed_acquire(
        self, state_key: str, error: BackendError, policy: OnFailure
    ) -> None:
        logger.warning(
            "luathrottle store failed to acquire a lease at %s (%s): %s",
            state_key,
            policy,
            error,
        )
        if policy == "raise":
            raise error

    def _failed(self, lease: _BaseLease, mode: str, error: BackendError) -> bool:
        logger.warning(
            "luathrottle store failed to %s a lease at %s (%s): %s",
            mode,
            lease.key,
            self.on_failure,
            error,
        )
        if self.on_failure == "raise":
            raise error
        return False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.max_in_flight}, lease={self.lease}, "
            f"backend={type(self.backend).__name__}(...))"
        )


def _latency(started: float | None, replies: object) -> float | None:
    """The store call's seconds, when timed and sent."""
    if started is None or isinstance(replies, NOT_SENT):
        return None
    return time.perf_counter() - started


def _gave_up(state_key: str, error: BackendError) -> None:
    logger.warning(
        "luathrottle could not give back a lease at %s whose call ended "
        "without its answer; it ends with its lease length: %s",
        state_key,
        error,
    )


def _log_foreign(key: str, reply: Sequence[int]) -> None:
    if len(reply) > 3 and reply[3]:
        logger.warning(
            "luathrottle lease set at %s held %d entries not written by "
            "luathrottle: dropped",
            key,
            reply[3],
        )


class ConcurrencyLimiter(_BaseConcurrencyLimiter[SyncBackend]):
    """At most ``max_in_flight`` leases of each key held at once, on a sync
    backend.

    Args:
        max_in_flight: leases one key may hold at once, 1 to 100,000.
        lease: seconds a lease lasts unless renewed (to the millisecond);
            a crashed holder's slot frees after this long.
        backend: where leases live: the process-wide ``MemoryBackend`` by
            default, ``SyncRedis(client)``, or a Redis-backed
            ``SyncDjangoCache``; a Django cache that is not Redis-backed
            cannot hold a lease set atomically and is refused.
        clock: not taken: leases expire on the store's clock, so that
            processes whose clocks disagree never end each other's leases. To
            move time in tests, give ``backend=MemoryBackend(clock=...)``.
        prefix: the start of every key this limiter writes.
        on_failure: when the store fails on ``acquire``, ``"raise"``
            (default) the ``BackendError``, ``"allow"`` (a lease that holds
            nothing) or ``"deny"``; a failed ``release()`` or ``renew()``
            raises on ``"raise"`` and otherwise returns False (the lease
            then frees itself when it runs out).
        scope: a str that keeps this limiter's leases apart from those of
            others with the same prefix and limits; ``""`` (the default) for
            none.
        observers: callables given a ``luathrottle.DecisionEvent`` for each
            lease granted, refused or released, besides the process's.
        shadow: take leases as ever, but grant every acquire: one the store
            refused is granted holding nothing, with the reason
            ``"shadow_denied"``, and observers see ``Outcome.SHADOW_DENIED``;
            a store failure then grants one too.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    _backend_type = SyncBackend

    def acquire(self, key: str) -> Lease:
        """Take a slot for ``key`` if one is free.

        A call that fails or is interrupted once it may have reached the
        store gives its lease id back before it raises or returns: one more
        script call, which, when it fails too, is logged, and the lease then
        ends with its lease length.

        Raises:
            BackendError: the store failed and ``on_failure`` is ``"raise"``.
        """
        return self._acquire(key, self.on_failure, None)

    def _acquire(
        self, key: str, policy: OnFailure, request: Any, shadow: bool = False
    ) -> Lease:
        """``acquire`` under ``policy``, for a door with a request, in shadow
        mode when the limiter or ``shadow`` says so."""
        state_key = self.state_key(key)
        lease_id = secrets.token_hex(16)
        if not SWITCH.on:
            return self._unlimited(Lease(self, state_key, lease_id, None, None, True))
        shadow = shadow or self.shadow
        if shadow:
            policy = "allow"
        started = time.perf_counter() if observed(self.observers) else None
        try:
            replies = send(self.backend, [self._call("acquire", state_key, lease_id)])
        except BaseException as error:
            # Interrupted (KeyboardInterrupt, say) after the call may have
            # taken the lease.
            self._give_back(state_key, lease_id, error)
            raise
        latency = _latency(started, replies)
        if isinstance(replies, BackendError):
            self._give_back(state_key, lease_id, replies)
            self._failed_acquire(state_key, replies, policy)
            lease = Lease(self, state_key, lease_id, None, replies, policy == "allow")
        else:
            _log_foreign(state_key, replies[0])
            lease = Lease(self, state_key, lease_id, replies[0])
        self._acquired(lease, latency, request, shadow)
        return lease

    def reset(self, key: str) -> None:
        """Forget every lease of ``key``.

        Raises:
            BackendError: the store failed, whatever ``on_failure`` says.
        """
        self.backend.delete_keys([self.state_key(key)])

    def _settle(self, lease: _BaseLease, mode: str) -> bool:
        started = time.perf_counter() if observed(self.observers) else None
        replies = send(self.backend, [self._call(mode, lease.key, lease.id)])
        if isinstance(replies, BackendError):
            return self._failed(lease, mode, replies)
        latency = _latency(started, replies)
        return self._replied(lease, mode, replies[0], latency)

    def _give_back(self, state_key: str, lease_id: str, error: BaseException) -> None:
        if isinstance(error, NOT_SENT):
            return
        replies = send(self.backend, [self._call("release", state_key, lease_id)])
        if isinstance(replies, BackendError):
            _gave_up(state_key, replies)


class AsyncConcurrencyLimiter(_BaseConcurrencyLimiter[AsyncBackend]):
    """``ConcurrencyLimiter`` for asyncio, on ``AsyncRedis``, a Redis-backed
    ``AsyncDjangoCache`` or ``MemoryBackend``; its methods are awaitables
    and its leases ``AsyncLease`` objects."""

    _backend_type = AsyncBackend

    async def acquire(self, key: str) -> AsyncLease:
        """Take a slot for ``key`` if one is free; see
        ``ConcurrencyLimiter.acquire``. Cancelled, it gives its lease back
        before the cancellation goes on."""
        return await self._acquire(key, self.on_failure, None)

    async def _acquire(
        self, key: str, policy: OnFailure, request: Any, shadow: bool = False
    ) -> AsyncLease:
        """``acquire`` under ``policy``, for a door with a request, in shadow
        mode when the limiter or ``shadow`` says so."""
        state_key = self.state_key(key)
        lease_id = secrets.token_hex(16)
        if not SWITCH.on:
            lease = AsyncLease(self, state_key, lease_id, None, None, True)
            return self._unlimited(lease)
        shadow = shadow or self.shadow
        if shadow:
            policy = "allow"
        started = time.perf_counter() if observed(self.observers) else None
        try:
            replies = await asend(
                self.backend, [self._call("acquire", state_key, lease_id)]
            )
        except BaseException as error:
            # Cancelled at any await, as late as its reply, after the call
            # may have taken the lease.
            await self._give_back(state_key, lease_id, error)
            raise
        latency = _latency(started, replies)
        if isinstance(replies, BackendError):
            await self._give_back(state_key, lease_id, replies)
            self._failed_acquire(state_key, replies, policy)
            lease = AsyncLease(
                self, state_key, lease_id, None, replies, policy == "allow"
            )
        else:
            _log_foreign(state_key, replies[0])
            lease = AsyncLease(self, state_key, lease_id, replies[0])
        self._acquired(lease, latency, request, shadow)
        return lease

    async def reset(self, key: str) -> None:
        """Forget every lease of ``key``."""
        await self.backend.adelete_keys([self.state_key(key)])

    async def _asettle(self, lease: _BaseLease, mode: str) -> bool:
        started = time.perf_counter() if observed(self.observers) else None
        replies = await asend(self.backend, [self._call(mode, lease.key, lease.id)])
        if isinstance(replies, BackendError):
            return self._failed(lease, mode, replies)
        latency = _latency(started, replies)
        return self._replied(lease, mode, replies[0], latency)

    async def _give_back(
        self, state_key: str, lease_id: str, error: BaseException
    ) -> None:
        if not isinstance(error, NOT_SENT):
            await _to_the_end(self._release_id(state_key, lease_id))

    async def _release_id(self, state_key: str, lease_id: str) -> None:
        call = self._call("release", state_key, lease_id)
        replies = await asend(self.backend, [call])
        if isinstance(replies, BackendError):
            _gave_up(state_key, replies)


#: Give-backs whose caller was cancelled meanwhile, kept until they end.
_running: set["asyncio.Task[Any]"] = set()


async def _to_the_end(call: Coroutine[Any, Any, None]) -> None:
    """Await ``call``, which a cancellation does not cut short: a caller
    cancelled meanwhile leaves at once, and ``call`` goes on in this
    module's keeping."""
    task = asyncio.ensure_future(call)
    _running.add(task)
    task.add_done_callback(_ended)
    await asyncio.shield(task)


def _ended(task: "asyncio.Task[Any]") -> None:
    _running.discard(task)
    if not task.cancelled():
        # Retrieved so that a caller who left sees no "never retrieved"
        # error: a give-back logs its own failure.
        task.exception()
