"""Coalescing: script calls that arrive while a round trip to the same store
is in flight wait, and go out together as one pipeline when it returns.

A backend that coalesces keeps one lane per event loop (async) or per
process (threads). A call that finds its lane idle goes straight out, as it
would without coalescing, at the cost of a flag; a call that finds it busy
joins the lane's queue. When the round trip in flight returns, everything
queued goes out as one batch (``_run_each``: one pipeline, each call atomic
on its own), and each caller gets the reply to its own calls, or its own
error: one call's ``ScriptError`` stays that call's, while a failure of the
store or an open breaker reaches every caller of the batch, each with a copy
of its own, and each caller's failure policy decides for it. So a batch only
ever holds calls that arrived while the lane was busy: no timer adds latency
when traffic is light. The breaker guards each round trip, a batch as one.

Nothing is merged: each caller's call stays a script call of its own, so
limits stay exact; on a cluster each call still goes to its slot's primary.

Cancellation: an async caller cancelled while queued is dropped before its
batch goes out, and sends nothing. One cancelled while its batch is in
flight leaves what a lone call cancelled after its write leaves: the store
ran its call (a hit counted), and the others get their replies, since the
batch runs in a task of the lane's, not the caller's. With threads, the
thread that finds its lane idle sends; when its reply comes, the first
thread queued leads the next batch, sending for all queued, and so on.
"""

import abc
import asyncio
import collections
import copy
import os
import threading
import weakref
from collections.abc import Sequence

from luathrottle.backends.base import AsyncBackend, ScriptCall, SyncBackend
from luathrottle.exceptions import BackendError
from luathrottle.scripts import Script

__all__ = ["AsyncCoalescing", "Outcome", "SyncCoalescing", "raised"]

#: Every sync lane, to start afresh in a forked child.
_LANES: "weakref.WeakSet[_SyncLane]" = weakref.WeakSet()

#: A call's reply, or its own error.
Outcome = list[int] | BackendError


def raised(outcomes: Sequence[Outcome]) -> list[list[int]]:
    """The replies of ``outcomes``, when none is an error.

    Raises:
        BackendError: the first error among ``outcomes``.
    """
    for outcome in outcomes:
        if isinstance(outcome, BackendError):
            raise outcome
    return outcomes  # type: ignore[return-value]


def _own(error: BackendError) -> BackendError:
    """A copy of ``error`` for one caller of a batch: callers raise their
    errors apart, and one shared object would gather every raiser's
    traceback."""
    twin = copy.copy(error)
    twin.__cause__ = error.__cause__
    return twin


def _sliced(
    batch: Sequence[tuple[Sequence[ScriptCall], object]],
    outcomes: Sequence[Outcome] | BackendError,
) -> list[list[Outcome] | BackendError]:
    """Each caller's part of a batch's ``outcomes``, in its order."""
    if isinstance(outcomes, BackendError):
        return [_own(outcomes) for _ in batch]
    parts: list[list[Outcome] | BackendError] = []
    start = 0
    for calls, _ in batch:
        parts.append(list(outcomes[start : start + len(calls)]))
        start += len(calls)
    return parts


class AsyncCoalescing(AsyncBackend):
    """An async backend whose calls share round trips while one is in
    flight, per event loop; ``_coalesce(True)`` turns it on."""

    #: Each event loop's lane; None while coalescing is off.
    _lanes: "dict[asyncio.AbstractEventLoop, _AsyncLane] | None" = None
    _lanes_guard = threading.Lock()

    def _coalesce(self, on: bool) -> None:
        self._lanes = {} if on else None

    @abc.abstractmethod
    async def _arun_each(self, calls: Sequence[ScriptCall]) -> list[Outcome]:
        """Run ``calls`` in one round trip: each call's reply, or its own
        ``ScriptError``.

        Raises:
            BackendError: the store failed.
        """

    async def arun_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        # The lone call's path, inline: no frame more than without
        # coalescing while nothing is in flight.
        lanes = self._lanes
        if lanes is not None:
            lane = lanes.get(asyncio.get_running_loop()) or self._new_lane()
            if lane.busy:
                return raised(await lane.join([(script, keys, args)]))[0]
            lane.busy = True
            try:
                with self._guard:
                    return await self._arun_script(script, keys, args)
            finally:
                lane.returned()
        with self._guard:
            return await self._arun_script(script, keys, args)

    async def arun_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        lanes = self._lanes
        if lanes is not None:
            lane = lanes.get(asyncio.get_running_loop()) or self._new_lane()
            if lane.busy:
                return raised(await lane.join(calls))
            lane.busy = True
            try:
                with self._guard:
                    return await self._arun_scripts(calls)
            finally:
                lane.returned()
        with self._guard:
            return await self._arun_scripts(calls)

    def _new_lane(self) -> "_AsyncLane":
        """The running loop's lane, new; those of closed loops are dropped."""
        loop = asyncio.get_running_loop()
        with self._lanes_guard:
            lanes = self._lanes
            assert lanes is not None
            for old in [old for old in lanes if old.is_closed()]:
                del lanes[old]
            lane = lanes[loop] = _AsyncLane(self)
            return lane


class _AsyncLane:
    """One event loop's traffic to one backend: whether a round trip is in
    flight, and the calls waiting for it to return."""

    __slots__ = ("backend", "busy", "queue", "sender")

    def __init__(self, backend: AsyncCoalescing) -> None:
        self.backend = backend
        self.busy = False
        self.queue: list[tuple[Sequence[ScriptCall], asyncio.Future[object]]] = []
        # The task sending the batches, held: the loop keeps only a weak
        # reference to it.
        self.sender: asyncio.Task[None] | None = None

    async def join(self, calls: Sequence[ScriptCall]) -> list[Outcome]:
        """Wait for the next batch to take ``calls``; their outcomes.

        Raises:
            BackendError: the store failed, or the breaker is open.
        """
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.queue.append((calls, future))
        # Cancelled here, the future is too: its batch leaves it out, or
        # leaves its outcome unread.
        return await future  # type: ignore[return-value]

    def returned(self) -> None:
        """The round trip in flight returned: send what queued meanwhile."""
        if self.queue:
            self.sender = asyncio.get_running_loop().create_task(self._send())
        else:
            self.busy = False

    async def _send(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue, []
                await self._send_batch(batch)
        finally:
            self.busy, self.sender = False, None
            # Only a cancelled sender (its loop shutting down) leaves some.
            for _, future in self.queue:
                future.cancel()
            self.queue = []

    async def _send_batch(
        self, batch: list[tuple[Sequence[ScriptCall], asyncio.Future[object]]]
    ) -> None:
        batch = [(calls, future) for calls, future in batch if not future.done()]
        if not batch:
            return
        backend = self.backend
        outcomes: list[Outcome] | BackendError
        try:
            with backend._guard:
                outcomes = await backend._arun_each(
                    [call for calls, _ in batch for call in calls]
                )
        except BackendError as error:
            outcomes = error
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:
            # A bug: every caller of the batch sees it, and the lane goes on.
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), part in zip(batch, _sliced(batch, outcomes), strict=True):
            if future.done():
                continue
            if isinstance(part, BackendError):
                future.set_exception(part)
            else:
                future.set_result(part)


class SyncCoalescing(SyncBackend):
    """A sync backend whose calls, from threads of one process, share round
    trips while one is in flight; ``_coalesce(True)`` turns it on."""

    _lane: "_SyncLane | None" = None

    def _coalesce(self, on: bool) -> None:
        self._lane = _SyncLane(self) if on else None

    @abc.abstractmethod
    def _run_each(self, calls: Sequence[ScriptCall]) -> list[Outcome]:
        """``AsyncCoalescing._arun_each``, sync."""

    def run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        lane = self._lane
        if lane is not None:
            # Inline, for the lone call's sake: taking the token is one call
            # to a deque, where a lock would cost two more.
            try:
                lane.token.pop()
            except IndexError:
                waiter = lane.queued([(script, keys, args)])
                if waiter is not None:
                    return raised(lane.wait(waiter))[0]
            try:
                with self._guard:
                    return self._run_script(script, keys, args)
            finally:
                lane.returned()
        with self._guard:
            return self._run_script(script, keys, args)

    def run_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        lane = self._lane
        if lane is not None:
            try:
                lane.token.pop()
            except IndexError:
                waiter = lane.queued(calls)
                if waiter is not None:
                    return raised(lane.wait(waiter))
            try:
                with self._guard:
                    return self._run_scripts(calls)
            finally:
                lane.returned()
        with self._guard:
            return self._run_scripts(calls)


class _Waiter:
    """A thread's calls, queued, and what came of them."""

    __slots__ = ("calls", "leads", "outcomes", "ready")

    def __init__(self, calls: Sequence[ScriptCall]) -> None:
        self.calls = calls
        # Released when the outcomes are in, or when this thread is to lead
        # the next batch.
        self.ready = threading.Lock()
        self.ready.acquire()
        self.leads = False
        self.outcomes: list[Outcome] | BackendError | None = None


class _SyncLane:
    """A process's traffic to one sync backend, from its threads.

    ``token`` holds one item while no round trip is in flight: a thread
    that takes it sends, and puts it back when its reply is in (``returned``).
    A thread that finds it gone queues, under ``lock``; whoever puts the
    token back then looks at the queue, and hands the token to the first
    thread queued, which sends for every thread queued. A thread queues
    before it looks for the token a last time, and the token is put back
    before the queue is looked at, so no thread is ever left queued while
    the token lies free (deque and list operations are atomic).
    """

    def __init__(self, backend: SyncCoalescing) -> None:
        self._backend = backend
        self.token: collections.deque[bool] = collections.deque([True])
        self.lock = threading.Lock()
        self.queue: list[_Waiter] = []
        _LANES.add(self)

    def forked(self) -> None:
        """In a forked child: none of the parent's threads is in flight, and
        the lock may have been held by one of them."""
        self.token = collections.deque([True])
        self.lock = threading.Lock()
        self.queue = []

    def queued(self, calls: Sequence[ScriptCall]) -> _Waiter | None:
        """Queue ``calls``, found the token gone; None when the token came
        back meanwhile, and is this thread's: send them, then ``returned``."""
        with self.lock:
            waiter = _Waiter(calls)
            self.queue.append(waiter)
            try:
                self.token.pop()
            except IndexError:
                return waiter
            self.queue.pop()
            return None

    def returned(self) -> None:
        """The round trip in flight returned: put the token back, and hand
        it to the first thread queued, which leads the next batch."""
        self.token.append(True)
        if self.queue:
            self._hand_on()

    def _hand_on(self) -> None:
        with self.lock:
            if not self.queue:
                return
            try:
                self.token.pop()
            except IndexError:
                # Another thread took it; it hands it on when it returns.
                return
            first = self.queue[0]
            first.leads = True
        first.ready.release()

    def wait(self, waiter: _Waiter) -> list[Outcome]:
        """``waiter``'s outcomes, once a batch took its calls: sent by
        another thread, or by this one when it leads.

        Raises:
            BackendError: the store failed, or the breaker is open.
        """
        try:
            waiter.ready.acquire()
        except BaseException:
            self._abandon(waiter)
            raise
        if waiter.leads:
            self._lead()
        outcomes = waiter.outcomes
        if isinstance(outcomes, BackendError):
            raise outcomes
        assert outcomes is not None
        return outcomes

    def _lead(self) -> None:
        with self.lock:
            batch, self.queue = self.queue, []
        outcomes: list[Outcome] | BackendError
        try:
            try:
                with self._backend._guard:
                    outcomes = self._backend._run_each(
                        [call for waiter in batch for call in waiter.calls]
                    )
            except BackendError as error:
                outcomes = error
            except BaseException as error:
                # The leading thread stopped (interrupted, or a bug): the
                # others' calls may or may not have run.
                stopped = BackendError(
                    f"the thread sending the batch stopped: {error!r}"
                )
                stopped.__cause__ = error
                outcomes = stopped
                raise
            finally:
                parts = _sliced([(w.calls, w) for w in batch], outcomes)
                for waiter, part in zip(batch, parts, strict=True):
                    waiter.outcomes = part
                    if not waiter.leads:
                        waiter.ready.release()
        finally:
            self.returned()

    def _abandon(self, waiter: _Waiter) -> None:
        """``waiter``'s thread stopped waiting (interrupted): its calls are
        not sent if no batch took them yet, and the lead it was handed, if
        any, passes on."""
        with self.lock:
            if waiter not in self.queue:
                return
            self.queue.remove(waiter)
            leads = waiter.leads
        if leads:
            self.returned()


def _forked() -> None:
    for lane in list(_LANES):
        lane.forked()


os.register_at_fork(after_in_child=_forked)
