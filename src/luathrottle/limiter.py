"""The standalone API: ``Limiter`` and ``AsyncLimiter``.

Both twins share ``_BaseLimiter``, which validates the configuration and
turns a call into a check without I/O; each method of a twin is one check
decided by the engine (``luathrottle._engine``), as every door's are.
"""

import asyncio
import functools
import time
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar, Generic, TypeVar, get_args

from luathrottle._checks import (
    Batching,
    Check,
    Counting,
    batching,
    call_limits,
    check_counting,
    packed,
    trial_of,
)
from luathrottle._clock import check_clock
from luathrottle._denials import denial_cache
from luathrottle._events import (
    Observer,
    check_near_limit,
    check_observers,
    check_shadow,
)
from luathrottle._failures import OnFailure, check_on_failure
from luathrottle._keys import (
    KEY_PREFIX,
    check_apart,
    check_prefix,
    check_scope,
    identity_digest,
    key_frame,
)
from luathrottle._limited import AsyncLimits, Limits
from luathrottle._lone import adecide_one, decide_one
from luathrottle._refunds import AsyncRefunds, Refunds
from luathrottle._waiting import Waiting
from luathrottle.algorithms import BaseThrottleAlgorithm, Mode, SimpleRate
from luathrottle.backends.base import AsyncBackend, SyncBackend, check_backend_kind
from luathrottle.backends.memory import _default_memory
from luathrottle.decision import Decision
from luathrottle.rates import Limit, LimitSpec, check_penalty, parse_limits, penalised

__all__ = ["AsyncLimiter", "Limiter"]

_BackendT = TypeVar("_BackendT", SyncBackend, AsyncBackend)


#: Per-call limits' key frames kept, at most: a caller's data cannot grow them.
_REMEMBERED = 256
#: The usual calls of this many recent identities are remembered, each
#: whole (its keys and arguments), per mode; forgotten all at once past it.
_RECENT_IDENTITIES = 1024


#: Builds a check in C: NamedTuple's own __new__ is a Python function, and
#: a limiter builds one at every call but its usual ones.
_new_check = functools.partial(tuple.__new__, Check)


class _BaseLimiter(Generic[_BackendT]):
    _backend_type: type[SyncBackend] | type[AsyncBackend]
    #: The front door its decisions' events name; adapters built on a
    #: limiter name their own.
    _door: ClassVar[str] = "limiter"
    #: What the user built, and its twin of the other kind, as errors name
    #: them: an adapter's, when it is built on a limiter.
    _owner: ClassVar[str | None] = None
    _twin: ClassVar[str | None]

    def __init__(
        self,
        max_requests: int | LimitSpec | Iterable[LimitSpec],
        duration_in_seconds: int | None = None,
        *,
        algorithm: BaseThrottleAlgorithm | None = None,
        backend: _BackendT | None = None,
        prefix: str = KEY_PREFIX,
        scope: str = "",
        clock: Callable[[], float] | None = None,
        on_failure: OnFailure = "raise",
        cache_denials: bool | int = False,
        observers: Iterable[Observer] | None = None,
        shadow: bool = False,
        near_limit: float | None = None,
        counting: Counting = "all_or_nothing",
        penalty: float | None = None,
    ) -> None:
        self.penalty = check_penalty(penalty)
        limits = parse_limits(max_requests, duration_in_seconds)
        self.limits = penalised(limits, penalty)
        check_apart(self.limits, "max_requests")
        self.algorithm = SimpleRate() if algorithm is None else algorithm
        if not isinstance(self.algorithm, BaseThrottleAlgorithm):
            raise TypeError(
                "algorithm must be a BaseThrottleAlgorithm such as SimpleRate() "
                f"or LeakyBucket(), got {self.algorithm!r}"
            )
        self.algorithm.check_limits(self.limits)
        self.script = self.algorithm.script
        self.backend: _BackendT = _default_memory() if backend is None else backend
        owner = self._owner or type(self).__name__
        check_backend_kind(self.backend, self._backend_type, owner, self._twin)
        self.prefix = check_prefix(prefix)
        self.scope = check_scope(scope)
        self._frames = [
            key_frame(self.prefix, self.script, self.scope, limit)
            for limit in self.limits
        ]
        self._call_limits: dict[object, tuple[Limit, ...]] = {}
        self._limit_frames: dict[Limit, tuple[str, str]] = {}
        self.clock = check_clock(clock)
        self.on_failure = check_on_failure(on_failure)
        self.denials = denial_cache(cache_denials, self.algorithm, self.clock)
        self.observers = check_observers(observers)
        self.shadow = check_shadow(shadow)
        self.near_limit = check_near_limit(near_limit)
        self.counting = check_counting(counting)
        # Found at the first check, when a Django cache's settings are ready.
        self._batching: Batching | None = None
        # A hit of cost 1 on the server's clock, the usual call, always
        # packs to the same arguments, so an identity's usual check is the
        # same every time: it is built once and remembered.
        self._usual_args: dict[Mode, tuple[str, ...]] = {
            mode: tuple(self.algorithm.pack_args(mode, 1, None, self.limits))
            for mode in get_args(Mode)
        }
        self._usual_checks: dict[Mode, dict[str, Check]] = {
            mode: {} for mode in get_args(Mode)
        }

    def state_keys(
        self, key: str, limits: LimitSpec | Iterable[LimitSpec] | None = None
    ) -> list[str]:
        """The state key of each limit of ``key``: hashed, one per limit,
        under the limiter's limits or ``limits`` as a call would take them.

        Raises:
            TypeError, ValueError: naming ``key`` or ``limits``.
        """
        return list(self._check(key, "peek", 1, limits).keys)

    def _check(
        self,
        key: str,
        mode: Mode,
        cost: int = 1,
        limits: LimitSpec | Iterable[LimitSpec] | None = None,
    ) -> Check:
        # The empty string is an identity like any other, as every door
        # counts it: all its calls share one count.
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, got {type(key).__name__} {key!r}")
        # The usual call: cost 1, on the server's clock, under the
        # limiter's limits.
        if limits is None and type(cost) is int and cost == 1 and self.clock is None:
            recent = self._usual_checks[mode]
            check = recent.get(key)
            if check is None:
                if len(recent) >= _RECENT_IDENTITIES:
                    recent.clear()
                digest = identity_digest(key)
                keys = tuple([head + digest + tail for head, tail in self._frames])
                each = self.counting == "each"
                words = packed(self.script, keys, self._usual_args[mode], each)
                check = self._new(key, digest, keys, self.limits, mode, 1, words)
                recent[key] = check
            return check
        if isinstance(cost, bool) or not isinstance(cost, int):
            raise TypeError(f"cost must be an int, got {type(cost).__name__} {cost!r}")
        if cost < 1:
            raise ValueError(f"cost must be at least 1, got {cost!r}")
        digest = identity_digest(key)
        chosen = (
            self.limits
            if limits is None
            else call_limits(self._call_limits, limits, self.algorithm, self.penalty)
        )
        frames = self._frames if limits is None else self._frames_of(chosen)
        keys = tuple([head + digest + tail for head, tail in frames])
        return self._new(key, digest, keys, chosen, mode, cost, None)

    def _new(
        self,
        key: str,
        digest: str,
        keys: tuple[str, ...],
        limits: tuple[Limit, ...],
        mode: Mode,
        cost: int,
        words: tuple[Sequence[str], Sequence[str]] | None,
    ) -> Check:
        found = self._batching
        if found is None:
            found = self._batching = batching(
                self.backend.traits(), self.algorithm, self.clock
            )
        return _new_check(
            (
                self.backend,
                self.algorithm,
                self.script,
                keys,
                limits,
                found.store,
                found.of(digest),
                mode,
                cost,
                self.clock,
                self.denials,
                self.on_failure,
                self._door,
                self.observers,
                self,
                None,
                key,
                self.shadow or trial_of(limits),
                self.near_limit,
                words,
                self.counting == "each",
            )
        )

    def _frames_of(self, limits: Sequence[Limit]) -> list[tuple[str, str]]:
        frames = []
        for limit in limits:
            frame = self._limit_frames.get(limit)
            if frame is None:
                if len(self._limit_frames) >= _REMEMBERED:
                    self._limit_frames.clear()
                frame = key_frame(self.prefix, self.script, self.scope, limit)
                self._limit_frames[limit] = frame
            frames.append(frame)
        return frames

    def _erasure(
        self, key: str
    ) -> tuple[list[str], tuple[Sequence[str], Sequence[str]] | None]:
        """The state keys of ``key`` under the limiter's limits, and what
        forgets them: the script's reset call when they are fields of a
        hash, else None, and the keys are deleted."""
        keys = self.state_keys(key)
        if not self.script.hashed:
            return keys, None
        args = self.algorithm.pack_args("reset", 1, None, self.limits)
        return keys, self.script.words(keys, args)

    def _forget(self, keys: Sequence[str]) -> None:
        if self.denials is not None:
            self.denials.forget(keys)

    def __repr__(self) -> str:
        limits = ", ".join(repr(limit.name) for limit in self.limits)
        return f"{type(self).__name__}([{limits}], algorithm={self.algorithm!r})"


class Limiter(_BaseLimiter[SyncBackend], Limits, Refunds):
    """Limits how often each key may act, on a sync backend.

    Args:
        max_requests: an int with ``duration_in_seconds``, or limits as
            strings (``"5/minute"``, ``"100/10s"``), ``Limit`` objects or
            ``(max_requests, duration)`` pairs; one call checks them all.
            Each counts by its name, else its window: two unnamed limits of
            one window are refused, give them ``name=``.
        duration_in_seconds: the window for an int ``max_requests``; a
            ``Rate`` or a number of seconds.
        algorithm: ``SimpleRate()`` (default) or ``LeakyBucket()``.
        backend: where state lives; the process-wide ``MemoryBackend`` by
            default, or ``SyncRedis(client)``.
        prefix: the start of every key this limiter writes.
        scope: a str that keeps this limiter's counts apart from those of
            others with the same prefix and limits; ``""`` (the default) for
            none.
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
        observers: callables given a ``luathrottle.DecisionEvent`` for each
            hit this limiter decides, besides the process's observers.
        shadow: decide and count as ever, but admit every hit: a denial
            becomes ``allowed`` with the reason ``"shadow_denied"``, and
            observers see ``Outcome.SHADOW_DENIED``. Decisions in shadow
            mode show no quota (``remaining`` is None), and a store failure
            admits whatever ``on_failure`` says. Turning it off keeps the
            counts. ``Limit(..., shadow=True)`` puts one limit on trial: a
            hit then goes as two script calls in one round trip, its
            enforced limits and its shadowed ones, each reported.
        near_limit: a fraction such as 0.2: an admitted hit that leaves less
            than that fraction of its limit is reported to observers as
            ``Outcome.NEAR_LIMIT``; None (default) for never.
        counting: ``"all_or_nothing"`` (default): a hit one limit denies
            counts in none; ``"each"``: it counts in every limit that admits
            it (DRF's way), and the hit is still denied.
        penalty: each limit's ``Limit(penalty=...)`` unless it sets one.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    _backend_type = SyncBackend
    _twin: ClassVar[str | None] = "AsyncLimiter"

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
                or a list of them); a limit counts on the counter of its
                name, else of its window, so one of the limiter's window
                counts on with the limiter's, judged by these numbers.

        Returns:
            The decision; when it is denied, nothing was spent (under
            ``counting="each"``, the limits that admitted it spent it).

        Raises:
            BackendError: the store failed and ``on_failure`` is ``"raise"``.
        """
        return decide_one(self._check(key, "hit", cost, limits))

    def wait(
        self,
        key: str,
        cost: int = 1,
        limits: LimitSpec | Iterable[LimitSpec] | None = None,
        *,
        timeout: float | None = None,
    ) -> Decision:
        """``hit`` until admitted or ``timeout`` seconds (None: no limit)
        pass, sleeping exactly each denial's ``retry_after`` between tries;
        waiters keep no place in a queue. Returns the admission, or at once
        the denial when the next try would pass ``timeout`` or the store
        failed; a denied wait spends nothing.

        Raises:
            ValueError: the cost can never fit a limit; a bad ``timeout``.
            BackendError: the store failed and ``on_failure`` is ``"raise"``.
        """
        waiting = Waiting(timeout, cost, time.monotonic())
        check = self._check(key, "hit", cost, limits)
        while pause := waiting.pause(decided := decide_one(check), time.monotonic()):
            time.sleep(pause)
        return decided

    def peek(
        self,
        key: str,
        cost: int = 1,
        limits: LimitSpec | Iterable[LimitSpec] | None = None,
    ) -> Decision:
        """Whether a hit of ``cost`` would be admitted now, spending nothing;
        ``limits`` as for ``hit``."""
        return decide_one(self._check(key, "peek", cost, limits))

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


class AsyncLimiter(_BaseLimiter[AsyncBackend], AsyncLimits, AsyncRefunds):
    """``Limiter`` for asyncio, on ``AsyncRedis`` or ``MemoryBackend``.

    Takes the same arguments as ``Limiter``; its methods are awaitables.
    """

    _backend_type = AsyncBackend
    _twin: ClassVar[str | None] = "Limiter"

    async def hit(
        self,
        key: str,
        cost: int = 1,
        limits: LimitSpec | Iterable[LimitSpec] | None = None,
    ) -> Decision:
        """Spend ``cost`` for ``key`` if every limit admits it; ``limits``
        overrides the limiter's for this call, as for ``Limiter.hit``."""
        return await adecide_one(self._check(key, "hit", cost, limits))

    async def wait(
        self,
        key: str,
        cost: int = 1,
        limits: LimitSpec | Iterable[LimitSpec] | None = None,
        *,
        timeout: float | None = None,
    ) -> Decision:
        """``hit``, until admitted or ``timeout`` passes, as ``Limiter.wait``;
        cancelled while it sleeps, it spends nothing."""
        waiting = Waiting(timeout, cost, time.monotonic())
        check = self._check(key, "hit", cost, limits)
        while pause := waiting.pause(
            decided := await adecide_one(check), time.monotonic()
        ):
            await asyncio.sleep(pause)
        return decided

    async def peek(
        self,
        key: str,
        cost: int = 1,
        limits: LimitSpec | Iterable[LimitSpec] | None = None,
    ) -> Decision:
        """Whether a hit of ``cost`` would be admitted now, spending nothing."""
        return await adecide_one(self._check(key, "peek", cost, limits))

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
