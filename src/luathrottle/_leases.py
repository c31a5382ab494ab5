"""The lease handles that concurrency limiters hand out: a slot granted or
refused, released or renewed through the limiter that made it."""

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

from luathrottle.decision import Reason
from luathrottle.exceptions import BackendError

__all__ = ["AsyncLease", "Lease"]


# What a lease needs of the limiter that made it, as protocols: the
# limiters' module imports this one.
class _Limiter(Protocol):
    max_in_flight: int


class _SyncLimiter(_Limiter, Protocol):
    def _settle(self, lease: "_BaseLease", mode: str) -> bool: ...


class _AsyncLimiter(_Limiter, Protocol):
    async def _asettle(self, lease: "_BaseLease", mode: str) -> bool: ...

    async def _give_back(
        self, state_key: str, lease_id: str, error: BaseException
    ) -> None: ...


class _BaseLease:
    """What both lease twins share; see ``Lease``."""

    __slots__ = (
        "_limiter",
        "allowed",
        "error",
        "id",
        "in_flight",
        "key",
        "reason",
        "released",
        "retry_after",
    )

    def __init__(
        self,
        limiter: _Limiter,
        key: str,
        lease_id: str,
        reply: Sequence[int] | None,
        error: BackendError | None = None,
        failed_open: bool = False,
    ) -> None:
        self._limiter = limiter
        self.key = key
        self.id = lease_id
        self.error = error
        self.released = False
        if reply is not None:
            self.allowed = reply[0] == 1
            self.in_flight: int | None = int(reply[1])
            self.retry_after: float | None = (
                None if self.allowed else int(reply[2]) / 1_000_000
            )
            self.reason: Reason | None = None if self.allowed else Reason.LIMIT_EXCEEDED
        else:
            # The store failed: the failure policy decided.
            self.allowed = failed_open
            self.in_flight = None
            self.retry_after = (
                None if self.allowed or error is None else max(error.retry_after, 1.0)
            )
            self.reason = Reason.STORE_UNAVAILABLE
            # The acquire gave its id back already (or its breaker kept it
            # from the store): nothing is left to release.
            self.released = True

    def admit_unseen(self, reason: Reason) -> None:
        """Grant the lease without a slot: the store refused it and the
        limiter is in shadow mode (``Reason.SHADOW_DENIED``), or limiting
        is switched off (``Reason.DISABLED``). It holds nothing to
        release."""
        self.allowed = True
        self.reason = reason
        self.released = True

    @property
    def limit(self) -> int:
        """``max_in_flight`` of the limiter that granted or refused this."""
        return self._limiter.max_in_flight

    @property
    def held(self) -> bool:
        """Whether this lease holds a slot in the store, as far as the
        holder knows: granted, and neither released nor store-less."""
        return self.allowed and not self.released

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(allowed={self.allowed}, "
            f"retry_after={self.retry_after}, in_flight={self.in_flight}, "
            f"reason={self.reason!r})"
        )


class Lease(_BaseLease):
    """A slot of a ``ConcurrencyLimiter``, or the refusal of one.

    Attributes:
        allowed: whether the slot was granted.
        retry_after: when refused, seconds until the oldest lease expires
            (the latest a slot frees); None when granted.
        in_flight: leases of the key held after the call; None when the
            store failed and the failure policy decided.
        reason: None when granted; ``Reason.LIMIT_EXCEEDED`` when every slot
            is taken; ``Reason.STORE_UNAVAILABLE`` when the failure policy
            decided, ``Reason.SHADOW_DENIED`` when every slot was taken but
            the limiter is in shadow mode, ``Reason.DISABLED`` when limiting
            is switched off (a lease allowed in these three ways holds
            nothing).
        key: the hashed state key (never the raw identity).
        id: the lease's random id.
        error: what the store did when the failure policy decided; else
            None.

    A context manager: ``with limiter.acquire(key) as lease:`` releases the
    lease on leaving the block, however it is left. Entering does not check
    ``allowed``; the block does.
    """

    __slots__ = ()
    _limiter: _SyncLimiter

    def release(self) -> bool:
        """Give the slot back.

        Returns:
            True when this call freed the slot; False when the lease was
            refused, already released, or had expired.

        Raises:
            BackendError: the store failed and the policy is ``"raise"``.
        """
        if not self.held:
            return False
        self.released = True
        return self._limiter._settle(self, "release")

    def renew(self) -> bool:
        """Extend the lease to ``lease`` seconds from now.

        Returns:
            True when renewed; False when the lease was refused, released,
            or had expired (its slot may be someone else's by now).

        Raises:
            BackendError: the store failed and the policy is ``"raise"``.
        """
        if not self.held:
            return False
        return self._limiter._settle(self, "renew")

    def __enter__(self) -> "Lease":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class AsyncLease(_BaseLease):
    """A slot of an ``AsyncConcurrencyLimiter``: ``Lease`` with awaitable
    ``release()`` and ``renew()``, and ``async with``."""

    __slots__ = ()
    _limiter: _AsyncLimiter

    async def release(self) -> bool:
        """Give the slot back; see ``Lease.release``. Cancelled before the
        store answers, it releases again before the cancellation goes on,
        as a cancelled ``acquire`` gives its lease back."""
        if not self.held:
            return False
        self.released = True
        try:
            return await self._limiter._asettle(self, "release")
        except asyncio.CancelledError as cancelled:
            # The call may have been cut short before it reached the store.
            await self._limiter._give_back(self.key, self.id, cancelled)
            raise

    async def renew(self) -> bool:
        """Extend the lease to ``lease`` seconds from now; see ``Lease.renew``."""
        if not self.held:
            return False
        return await self._limiter._asettle(self, "renew")

    async def __aenter__(self) -> "AsyncLease":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.release()
