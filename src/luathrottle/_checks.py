"""Checks and verdicts: what a front door asks the engine, and what it gets.

A door (``Limiter``, a Django stage, DRF, dmr, the ASGI middleware, the
FastAPI dependency) turns a request into checks, one per identity and set
of limits, and the engine turns the checks into verdicts. A check carries
everything the store call needs and everything the engine owns around it:
the denial cache, the failure policy and the observers. Doors build checks
once per identity where they can (``Limiter`` keeps its usual ones).
"""

import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Literal, NamedTuple, Protocol, get_args

from luathrottle._denials import DenialCache
from luathrottle._events import Observers
from luathrottle._failures import OnFailure
from luathrottle._keys import check_apart
from luathrottle.algorithms import BaseThrottleAlgorithm, Mode
from luathrottle.backends.base import AsyncBackend, StoreTraits, SyncBackend
from luathrottle.decision import Decision, LimitDecision
from luathrottle.exceptions import BackendError
from luathrottle.rates import Limit, LimitSpec, parse_limits_named, penalised
from luathrottle.scripts import Script

__all__ = [
    "NO_SETTINGS",
    "Batching",
    "Check",
    "Counting",
    "Defaults",
    "Verdict",
    "batching",
    "call_limits",
    "check_counting",
    "joined",
    "limits_memo",
    "packed",
    "trial_of",
    "trial_parts",
    "weak_request",
]

#: How a hit counts when some limits admit it and others deny it:
#: ``"all_or_nothing"`` counts it in none, ``"each"`` in every limit that
#: admits it (Django REST framework's throttles count so).
Counting = Literal["all_or_nothing", "each"]


class Check(NamedTuple):
    """One identity's limits, to decide in one store call.

    Attributes:
        backend: the store.
        algorithm: the algorithm whose script decides.
        script: the algorithm's script.
        keys: the state key of each limit, all with the identity's hash tag.
        limits: the limits, in the order of ``keys``.
        store: the store's identity: checks of one store go in one round
            trip.
        batch: equal for checks that one script call may decide together:
            the store, the algorithm and the clock, and on a store that takes
            one hash slot per call (Redis Cluster) the identity's hash tag.
            Checks in shadow mode never share a call with enforced ones (the
            engine keeps them apart), so that a would-be denial never stops
            an enforced limit from counting.
        mode: ``"hit"`` or ``"peek"``.
        cost: the units a hit spends.
        clock: the decider's clock, read once per script call; None for
            the store's.
        denials: the decider's denial cache, or None.
        on_failure: the decider's failure policy.
        door: the front door, as events name it.
        observers: the decider's own observers.
        source: the limiter or throttle that decides, for events.
        request: the door's request, for events; a weak reference to it
            (``weak_request``) where the door keeps the check's verdict on
            the request.
        identity: the raw identity, for observers that ask for it.
        shadow: the check is in shadow mode: the store decides and counts
            as ever, and the door admits what it denies. None when some of
            its limits, not all, are on trial (``Limit(shadow=True)``): it
            is decided as two checks (``trial_parts``).
        near_limit: the fraction of a limit left under which an admitted
            hit is reported as ``Outcome.NEAR_LIMIT``; None for never.
        words: the script's KEYS and ARGV when the door packed them ahead
            (``Limiter``'s usual calls); None to pack them per call.
        each: a hit counts in every limit that admits it, even when another
            denies it (``counting="each"``); False for all or nothing.
            Checks batch into one script call only with checks that count
            the same way.
    """

    backend: SyncBackend | AsyncBackend
    algorithm: BaseThrottleAlgorithm
    script: Script
    keys: tuple[str, ...]
    limits: tuple[Limit, ...]
    store: Hashable
    batch: Hashable
    mode: Mode
    cost: int
    clock: Callable[[], float] | None
    denials: DenialCache | None
    on_failure: OnFailure
    door: str
    observers: Observers
    source: Any
    request: Any
    identity: str | None
    shadow: bool | None
    near_limit: float | None
    words: tuple[Sequence[str], Sequence[str]] | None
    each: bool


def weak_request(request: object) -> object:
    """``request`` as the checks of a door that keeps their verdicts on it
    name it: by a weak reference, where it takes one, so that the two make
    no cycle, which only the garbage collector would free, about 15,000
    instructions later (``_outcomes.event`` follows the reference)."""
    try:
        return weakref.ref(request)
    except TypeError:  # None, or an object that takes no weak reference
        return request


class Defaults(Protocol):
    """What the settings give a check whose throttle sets none itself:
    ``luathrottle.django._conf.Config`` is one."""

    @property
    def on_failure(self) -> OnFailure: ...

    @property
    def shadow(self) -> bool: ...

    @property
    def near_limit(self) -> float | None: ...


class _NoSettings(NamedTuple):
    on_failure: OnFailure = "allow"
    shadow: bool = False
    near_limit: float | None = None


#: The defaults of a check made without the settings (``state_key``).
NO_SETTINGS = _NoSettings()


class Verdict(NamedTuple):
    """How the engine decided one check.

    Attributes:
        check: the check.
        decision: what the door answers with, over the check's limits; made
            by the failure policy (its reason ``STORE_UNAVAILABLE``) when
            ``error`` is set.
        error: what the store did, when the policy decided instead.
        cached: the denial cache decided, without the store.
        stored: the store's own decision when the door answers with another
            one (a check in shadow mode); None otherwise.
    """

    check: Check
    decision: Decision
    error: BackendError | None = None
    cached: bool = False
    stored: Decision | None = None


class Batching(NamedTuple):
    """What a decider's checks are batched by, found once per decider.

    Attributes:
        store: the store's identity.
        batch: one object for every decider of the same store, algorithm
            and clock, which hashes and compares as fast as any object:
            requests batch their checks by it.
        single_slot: a script call may take keys of one hash slot only.
    """

    store: Hashable
    batch: object
    single_slot: bool

    def of(self, digest: str) -> Hashable:
        """The batch of a check of the identity whose hash tag is ``digest``."""
        return (self.batch, digest) if self.single_slot else self.batch


#: Per-call limits parsed are remembered up to this many per limiter: limits
#: from a caller's own data cannot grow them without end.
_REMEMBERED = 256

#: One batch object per store, algorithm and clock. The algorithm itself,
#: not its type: one script call packs one algorithm's options (a
#: TokenBucket's burst) for all its limits. Forgotten all at once past
#: this many, so that deciders built per request with clocks of their own
#: cannot grow it without end: their checks then only batch apart.
_BATCHES: dict[tuple[Hashable, ...], object] = {}
_MOST_BATCHES = 4096
_BATCHES_LOCK = threading.Lock()


def batching(
    traits: StoreTraits,
    algorithm: BaseThrottleAlgorithm,
    clock: Callable[[], float] | None,
) -> Batching:
    """A decider's batching, from its store's traits."""
    with _BATCHES_LOCK:
        if len(_BATCHES) >= _MOST_BATCHES:
            _BATCHES.clear()
        batch = _BATCHES.setdefault((traits.identity, algorithm, id(clock)), object())
    return Batching(traits.identity, batch, traits.single_slot_calls)


def trial_parts(check: Check) -> list[Check]:
    """``check``, whose limits are partly on trial, as the two checks to
    decide: its enforced limits, and its limits on trial in shadow mode.
    One script call for both would let a would-be denial keep the enforced
    limits from counting (all or nothing)."""
    parts = []
    for shadow in (False, True):
        chosen = [i for i, limit in enumerate(check.limits) if limit.shadow is shadow]
        keys = tuple(check.keys[i] for i in chosen)
        limits = tuple(check.limits[i] for i in chosen)
        parts.append(
            check._replace(keys=keys, limits=limits, shadow=shadow, words=None)
        )
    return parts


def joined(check: Check, verdicts: Sequence[Verdict]) -> Decision:
    """One decision over ``check``'s limits, in their order, from the
    verdicts of its parts."""
    decided: dict[str, LimitDecision] = {}
    for verdict in verdicts:
        decided.update(zip(verdict.check.keys, verdict.decision.limits, strict=True))
    return Decision.combine([decided[key] for key in check.keys])


def call_limits(
    memos: dict[object, tuple[Limit, ...]],
    limits: LimitSpec | Iterable[LimitSpec],
    algorithm: BaseThrottleAlgorithm,
    penalty: float | None,
) -> tuple[Limit, ...]:
    """A limiter's per-call ``limits``, validated as its constructor's are,
    naming ``limits``, with the limiter's ``penalty`` where they set none;
    remembered in ``memos`` (up to ``_REMEMBERED``) when they are hashable.

    Raises:
        TypeError, ValueError: naming ``limits``.
    """
    memo = limits_memo(limits)
    if memo is not None and memo in memos:
        return memos[memo]
    parsed = penalised(parse_limits_named(limits, "limits"), penalty)
    check_apart(parsed, "limits")
    try:
        algorithm.check_limits(parsed)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"limits: {exc}") from None
    if memo is not None:
        if len(memos) >= _REMEMBERED:
            memos.clear()
        memos[memo] = parsed
    return parsed


def limits_memo(limits: object) -> object:
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


def trial_of(limits: tuple[Limit, ...]) -> bool | None:
    """A check's shadow mode by its limits': True when all are on trial
    (``Limit(shadow=True)``), False when none is, None when some are."""
    trial = [limit.shadow for limit in limits]
    return all(trial) or (None if any(trial) else False)


def check_counting(counting: object) -> Counting:
    """``counting``, validated.

    Raises:
        ValueError: naming ``counting`` when it is neither
            ``"all_or_nothing"`` nor ``"each"``.
    """
    if counting not in get_args(Counting):
        raise ValueError(
            f'counting must be "all_or_nothing" or "each", got {counting!r}'
        )
    return counting  # type: ignore[return-value]


def packed(
    script: Script, keys: Sequence[str], args: Sequence[str], each: bool
) -> tuple[Sequence[str], Sequence[str]]:
    """The KEYS and ARGV of a script call (``Script.words``), with the flag
    that makes every limit that admits a hit count it last in ARGV, where
    every script of ours reads it."""
    words = script.words(keys, args)
    return (words[0], [*words[1], "each"]) if each else words
