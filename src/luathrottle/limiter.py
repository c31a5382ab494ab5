"""The standalone API: ``Limiter`` and ``AsyncLimiter``.

Both twins share ``_BaseLimiter``, which validates the configuration and
packs and decodes calls without I/O; each method of a twin is one backend
call between the two.
"""

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar, get_args

from luathrottle._clock import check_clock, microseconds
from luathrottle._denials import DenialCache, denial_cache
from luathrottle._failures import OnFailure, check_on_failure, failure_decision
from luathrottle._keys import check_prefix, identity_digest, key_frame, script_words
from luathrottle.algorithms import BaseThrottleAlgorithm, Mode, SimpleRate
from luathrottle.backends.base import AsyncBackend, SyncBackend, check_backend_kind
from luathrottle.decision import Decision
from luathrottle.exceptions import BackendError
from luathrottle.rates import Limit, LimitSpec, parse_limits, parse_limits_named

if TYPE_CHECKING:
    from luathrottle.backends.memory import MemoryBackend

__all__ = ["AsyncLimiter", "Limiter"]

_BackendT = TypeVar("_BackendT", SyncBackend, AsyncBackend)


@functools.cache
def _default_memory() -> "MemoryBackend":
    """The process-wide store of limiters given no backend, built when the
    first of them is."""
    from luathrottle.backends.memory import MemoryBackend

    return MemoryBackend()


#: Per-call limits parsed, and key frames built, are remembered up to this
#: many, so that a caller passing limits from its own data cannot grow them
#: without end.
_REMEMBERED = 256
#: The usual calls of this many recent identities are remembered, each
#: whole (its keys and arguments), per mode; forgotten all at once past it.
_RECENT_IDENTITIES = 1024


def _memo(limits: object) -> object:
    """What per-call ``limits`` are remembered by, or None when they cannot
    be. A list is remembered apart from a tuple of the same items: [5, 60]
    is no limit, (5, 60) is one."""
    if isinstance(limits, str | Limit):
        return limits
    if isinstance(limits, tuple | list):
        memo = (type(limits), *limits)
        try:
            hash(memo)
        except TypeError:
            return None
        return memo
    return None


class _Call(NamedTuple):
    """One script call: the state keys and arguments, what the denial cache
    needs of it (the cost, and the time the script reads when the limiter
    has a clock), and the KEYS and ARGV the store gets (``script_words``)."""

    keys: tuple[str, ...]
    args: Sequence[str]
    limits: tuple[Limit, ...]
    cost: int
    now_us: int | None
    script_keys: Sequence[str]
    script_args: Sequence[str]


#: Builds a tuple subclass in C: NamedTuple's own __new__ is a Python
#: function, and every call of a limiter builds one.
_new_call = functools.partial(tuple.__new__, _Call)


#: What a denial cache that answered nothing needs to learn the store's
#: reply: the time the call was sent at, and the cache's epoch then.
_Ticket = tuple[int, int]


class _BaseLimiter(Generic[_BackendT]):
    _backend_type: type[SyncBackend] | type[AsyncBackend]

    def __init__(
        self,
        max_requests: int | LimitSpec | Iterable[LimitSpec],
        duration_in_seconds: int | None = None,
        *,
        algorithm: BaseThrottleAlgorithm | None = None,
        backend: _BackendT | None = None,
        prefix: str = "lt",
        clock: Callable[[], float] | None = None,
        on_failure: OnFailure = "raise",
        cache_denials: bool | int = False,
    ) -> None:
        self.limits = parse_limits(max_requests, duration_in_seconds)
        self.algorithm = SimpleRate() if algorithm is None else algorithm
        if not isinstance(self.algorithm, BaseThrottleAlgorithm):
            raise TypeError(
                "algorithm must be a BaseThrottleAlgorithm such as SimpleRate() "
                f"or LeakyBucket(), got {self.algorithm!r}"
            )
        self.algorithm.check_limits(self.limits)
        self.script = self.algorithm.script
        self.backend: _BackendT = _default_memory() if backend is None else backend
        check_backend_kind(self.backend, self._backend_type, type(self).__name__)
        self.prefix = check_prefix(prefix)
        self._frames = [
            key_frame(self.prefix, self.script, "", limit) for limit in self.limits
        ]
        self._call_limits: dict[object, tuple[Limit, ...]] = {}
        self._limit_frames: dict[Limit, tuple[str, str]] = {}
        self.clock = check_clock(clock)
        self.on_failure = check_on_failure(on_failure)
        self.denials = denial_cache(cache_denials, self.algorithm, self.clock)
        # A hit of cost 1 on the server's clock, the usual call, always
        # packs to the same arguments, so an identity's usual call is the
        # same every time: it is built once and remembered.
        self._usual_args: dict[Mode, tuple[str, ...]] = {
            mode: tuple(self.algorithm.pack_args(mode, 1, None, self.limits))
            for mode in get_args(Mode)
        }
        self._usual_calls: dict[Mode, dict[str, _Call]] = {
            mode: {} for mode in get_args(Mode)
        }

    def _call(
        self,
        key: str,
        mode: Mode,
        cost: int = 1,
        limits: LimitSpec | Iterable[LimitSpec] | None = None,
    ) -> _Call:
        # The empty string is an identity like any other, as every door
        # counts it: all its calls share one count.
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, got {type(key).__name__} {key!r}")
        # The usual call: cost 1, on the server's clock, under the
        # limiter's limits.
        if limits is None and type(cost) is int and cost == 1 and self.clock is None:
            recent = self._usual_calls[mode]
            call = recent.get(key)
            if call is None:
                if len(recent) >= _RECENT_IDENTITIES:
                    recent.clear()
                digest = identity_digest(key)
                keys = tuple([head + digest + tail for head, tail in self._frames])
                call = self._new(keys, self._usual_args[mode], self.limits, 1, None)
                recent[key] = call
            return call
        if isinstance(cost, bool) or not isinstance(cost, int):
            raise TypeError(f"cost must be an int, got {type(cost).__name__} {cost!r}")
        if cost < 1:
            raise ValueError(f"cost must be at least 1, got {cost!r}")
        digest = identity_digest(key)
        now_us = None if self.clock is None else microseconds(self.clock)
        if limits is not None:
            chosen = self._parse_call_limits(limits)
            keys = tuple(
                [head + digest + tail for head, tail in self._frames_of(chosen)]
            )
            args = self.algorithm.pack_args(mode, cost, now_us, chosen)
            return self._new(keys, args, chosen, cost, now_us)
        keys = tuple([head + digest + tail for head, tail in self._frames])
        args = self.algorithm.pack_args(mode, cost, now_us, self.limits)
        return self._new(keys, args, self.limits, cost, now_us)

    def _new(
        self,
        keys: tuple[str, ...],
        args: Sequence[str],
        limits: tuple[Limit, ...],
        cost: int,
        now_us: int | None,
    ) -> _Call:
        script_keys, script_args = script_words(self.script, keys, args)
        return _new_call((keys, args, limits, cost, now_us, script_keys, script_args))

    def _parse_call_limits(
        self, limits: LimitSpec | Iterable[LimitSpec]
    ) -> tuple[Limit, ...]:
        """Per-call limits, validated as the constructor's are, naming
        ``limits``; remembered when they are hashable."""
        memo = _memo(limits)
        if memo is not None and memo in self._call_limits:
            return self._call_limits[memo]
        parsed = parse_limits_named(limits, "limits")
        try:
            self.algorithm.check_limits(parsed)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"limits: {exc}") from None
        if memo is not None:
            if len(self._call_limits) >= _REMEMBERED:
                self._call_limits.clear()
            self._call_limits[memo] = parsed
        return parsed

    def _frames_of(self, limits: Sequence[Limit]) -> list[tuple[str, str]]:
        frames = []
        for limit in limits:
            frame = self._limit_frames.get(limit)
            if frame is None:
                if len(self._limit_frames) >= _REMEMBERED:
                    self._limit_frames.clear()
                frame = key_frame(self.prefix, self.script, "", limit)
                self._limit_frames[limit] = frame
            frames.append(frame)
        return frames

    def _erasure(
        self, key: str
    ) -> tuple[list[str], tuple[Sequence[str], Sequence[str]] | None]:
        """The state keys of ``key`` under the limiter's limits, and what
        forgets them: the script's reset call when they are fields of a
        hash, else None, and the keys are deleted."""
        call = self._call(key, "reset")
        if not self.script.hashed:
            return list(call.keys), None
        return list(call.keys), (call.script_keys, call.script_args)

    def _known(
        self, denials: DenialCache, call: _Call
    ) -> tuple[Decision | None, _Ticket]:
        """What the denial cache answers for ``call`` without the store, and
        what it needs to learn the store's reply when it answers nothing."""
        ticket = (denials.now() if call.now_us is None else call.now_us, denials.epoch)
        reply = denials.answer(call.keys, call.limits, call.cost, ticket[0])
        if reply is None:
            return None, ticket
        return Decision.from_reply(call.limits, reply), ticket

    def _learn(self, call: _Call, reply: list[int], ticket: _Ticket) -> None:
        if self.denials is not None:
            self.denials.learn(call.keys, call.limits, call.cost, reply, *ticket)

    def _forget(self, keys: Sequence[str]) -> None:
        if self.denials is not None:
            self.denials.forget(keys)

    def _failed(self, call: _Call, error: BackendError) -> Decision:
        where = f"{self.script.name} {call.keys[0]}"
        return failure_decision(self.on_failure, call.limits, error, where)

    def __repr__(self) -> str:
        limits = ", ".join(repr(limit.name) for limit in self.limits)
        return f"{type(self).__name__}([{limits}], algorithm={self.algorithm!r})"


class Limiter(_BaseLimiter[SyncBackend]):
    """Limits how often each key may act, on a sync backend.

    Args:
        max_requests: an int with ``duration_in_seconds``, or limits as
            strings (``"5/minute"``, ``"100/10s"``), ``Limit`` objects or
            ``(max_requests, duration)`` pairs; one call checks them all.
        duration_in_seconds: the window for an int ``max_requests``; a
            ``Rate`` or a number of seconds.
        algorithm: ``SimpleRate()`` (default) or ``LeakyBucket()``.
        backend: where state lives; the process-wide ``MemoryBackend`` by
            default, or ``SyncRedis(client)``.
        prefix: the start of every key this limiter writes.
        clock: returns the time in seconds; by default the server's clock is
            used, which keeps app servers' clock skew out of decisions.
        on_failure: when the store fails, ``"raise"`` (default) the
            ``BackendError``, ``"allow"`` the hit, or ``"deny"`` it; the
            decision's ``reason`` is then ``"store_unavailable"``.
        cache_denials: remember denials in this process until their
            ``retry_after`` and answer what they prove denied without the
            store: True for up to 10,000 identities, an int for that many,
            False (default) for none. A reset from another process is seen
            at ``retry_after`` at the latest.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    _backend_type = SyncBackend

    def hit(
        self,
        key: str,
        cost: int = 1,
        limits: LimitSpec | Iterable[LimitSpec] | None = None,
    ) -> Decision:
        """Spend ``cost`` for ``key`` if every limit admits it.

        Args:
            key: who is counted; any str, the empty one included.
            cost: units this hit spends, at least 1.
            limits: limits for this call instead of the limiter's, in any
                form the limiter takes (``"5/minute"``, a ``Limit``, a pair,
                or a list of them); each limit has its own counter, so the
                same key under other limits counts afresh.

        Returns:
            The decision; when it is denied, nothing was spent.

        Raises:
            BackendError: the store failed and ``on_failure`` is ``"raise"``.
        """
        return self._decide(self._call(key, "hit", cost, limits))

    def peek(
        self,
        key: str,
        cost: int = 1,
        limits: LimitSpec | Iterable[LimitSpec] | None = None,
    ) -> Decision:
        """Whether a hit of ``cost`` would be admitted now, spending nothing;
        ``limits`` as for ``hit``."""
        return self._decide(self._call(key, "peek", cost, limits))

    def reset(self, key: str) -> None:
        """Forget everything ``key`` has spent under the limiter's limits.

        Raises:
            BackendError: the store failed, whatever ``on_failure`` says.
        """
        keys, words = self._erasure(key)
        # Forgotten after the delete, so that no call sent before it can
        # teach the cache a denial that the delete undid.
        try:
            if words is not None:
                self.backend.run_script(self.script, *words)
            else:
                self.backend.delete_keys(keys)
        finally:
            self._forget(keys)

    def _decide(self, call: _Call) -> Decision:
        ticket = None
        if self.denials is not None:
            known, ticket = self._known(self.denials, call)
            if known is not None:
                return known
        try:
            reply = self.backend.run_script(
                self.script, call.script_keys, call.script_args
            )
        except BackendError as error:
            return self._failed(call, error)
        if ticket is not None:
            self._learn(call, reply, ticket)
        return Decision.from_reply(call.limits, reply, call.keys)


class AsyncLimiter(_BaseLimiter[AsyncBackend]):
    """``Limiter`` for asyncio, on ``AsyncRedis`` or ``MemoryBackend``.

    Takes the same arguments as ``Limiter``; its methods are awaitables.
    """

    _backend_type = AsyncBackend

    async def hit(
        self,
        key: str,
        cost: int = 1,
        limits: LimitSpec | Iterable[LimitSpec] | None = None,
    ) -> Decision:
        """Spend ``cost`` for ``key`` if every limit admits it; ``limits``
        overrides the limiter's for this call, as for ``Limiter.hit``."""
        return await self._decide(self._call(key, "hit", cost, limits))

    async def peek(
        self,
        key: str,
        cost: int = 1,
        limits: LimitSpec | Iterable[LimitSpec] | None = None,
    ) -> Decision:
        """Whether a hit of ``cost`` would be admitted now, spending nothing."""
        return await self._decide(self._call(key, "peek", cost, limits))

    async def reset(self, key: str) -> None:
        """Forget everything ``key`` has spent."""
        keys, words = self._erasure(key)
        try:
            if words is not None:
                await self.backend.arun_script(self.script, *words)
            else:
                await self.backend.adelete_keys(keys)
        finally:
            self._forget(keys)

    async def _decide(self, call: _Call) -> Decision:
        ticket = None
        if self.denials is not None:
            known, ticket = self._known(self.denials, call)
            if known is not None:
                return known
        try:
            reply = await self.backend.arun_script(
                self.script, call.script_keys, call.script_args
            )
        except BackendError as error:
            return self._failed(call, error)
        if ticket is not None:
            self._learn(call, reply, ticket)
        return Decision.from_reply(call.limits, reply, call.keys)
