"""Observers: every decision of every front door, reported once.

An observer is a callable that takes a ``DecisionEvent``. Register it for
the whole process with ``add_observer`` (metrics, logs, Django's signals),
or for one limiter or throttle with its ``observers=`` argument. The engine
reports each decision once, to the process's observers and then to the
decider's own, after the decision is made and before the door answers.

Reporting is cheap when nobody listens: no event is built, and the store
call is not timed. An observer that only counts decisions, such as
``PrometheusObserver``, may also have a ``tally_for`` (``TallyFor``): when
every observer listening has one, an admitted hit is told to each as its
store call's time, appended to the observer's ``Tally`` of the hit's
labels, without an event or a call into the observer: an event would cost
more to build than the count.

An observer that raises is logged on the ``luathrottle`` logger and
skipped; it never fails the request. Every denial is also logged, once, on
that logger (``luathrottle._denial_log``).

Events name a state by its hashed key, never by the raw identity, unless the
observer was added with ``identities=True``.
"""

import enum
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol

from luathrottle._denial_log import log_denial
from luathrottle.decision import LimitDecision
from luathrottle.exceptions import BackendError

__all__ = [
    "DENIALS",
    "REGISTRY",
    "DecisionEvent",
    "Labels",
    "Observer",
    "Observers",
    "Outcome",
    "Tally",
    "TallyFor",
    "add",
    "add_observer",
    "check_near_limit",
    "check_observers",
    "check_shadow",
    "observed",
    "remove_observer",
    "report",
    "taken",
    "tally_failed",
]

logger = logging.getLogger("luathrottle")


class Outcome(enum.StrEnum):
    """What became of one decision.

    A ``StrEnum``, so ``event.outcome == "denied"`` holds too.
    """

    #: The store admitted the hit, or granted the lease.
    ADMITTED = "admitted"
    #: The store admitted the hit, and the deciding limit has less than
    #: its ``near_limit`` fraction left: the identity nears a denial.
    NEAR_LIMIT = "near_limit"
    #: The store denied the hit.
    DENIED = "denied"
    #: The denial cache denied the hit without asking the store.
    DENIED_FROM_CACHE = "denied_from_cache"
    #: The store failed, and the failure policy admitted the hit.
    FAILED_OPEN = "failed_open"
    #: The store failed, and the failure policy denied the hit.
    FAILED_CLOSED = "failed_closed"
    #: Every slot of a concurrency limit was taken.
    LEASE_REFUSED = "lease_refused"
    #: A lease was given back.
    LEASE_RELEASED = "lease_released"
    #: The store denied the hit (or refused the lease), and the limit is in
    #: shadow mode: the door admitted it.
    SHADOW_DENIED = "shadow_denied"


#: What metrics count decisions by: an event's first four fields.
Labels = tuple[str, str, str, Outcome]

#: The outcomes that refused, or would have refused in shadow mode: each is
#: logged once (``luathrottle._denial_log``).
DENIALS = frozenset(
    {
        Outcome.DENIED,
        Outcome.DENIED_FROM_CACHE,
        Outcome.LEASE_REFUSED,
        Outcome.SHADOW_DENIED,
    }
)


class DecisionEvent(NamedTuple):
    """One decision, as the engine reports it to observers.

    A named tuple, cheap to build for every decision; its first four fields
    are what metrics count decisions by (``event[:4]``).

    Attributes:
        door: the front door that asked: ``"limiter"``, ``"django"``,
            ``"drf"``, ``"dmr"``, ``"asgi"``, ``"fastapi"``, ``"flask"``,
            ``"concurrency"``.
        limit: the name of the limit that decided (for a lease, the
            concurrency limit, ``"3 in flight"``).
        algorithm: the script that decided, ``"fixed_window"``.
        outcome: what became of the decision.
        remaining: units (or free slots) left after it, as the store
            counted them (in shadow mode too); None when the store did not
            decide.
        retry_after: seconds until a denied hit would fit; None otherwise.
        latency: seconds the store call took; None when no store call was
            made (the denial cache answered, or the breaker was open).
        key: the hashed state key the decision was made on.
        decision: the deciding limit's decision, as the store made it (in
            shadow mode, not what the door answered); None for leases.
        error: what the store did, when the failure policy decided.
        source: the limiter or throttle that decided.
        request: the door's request, when it has one.
        identity: the raw identity, only for observers added with
            ``identities=True``; None otherwise.
    """

    door: str
    limit: str
    algorithm: str
    outcome: Outcome
    remaining: int | None
    retry_after: float | None
    latency: float | None
    key: str
    decision: LimitDecision | None = None
    error: BackendError | None = None
    source: Any = None
    request: Any = None
    identity: str | None = None


#: What an observer is.
Observer = Callable[[DecisionEvent], object]


class Tally(Protocol):
    """What an observer that only counts keeps for one tuple of labels (an
    event's first four fields), to which the engine hands admitted hits
    without calling the observer.

    Attributes:
        pending: the store call seconds of the hits not counted yet. The
            engine appends to it from any thread, without a lock; a hit
            that made no store call is told as an event.
        most: how many hits ``pending`` may hold: once it holds that many,
            the engine calls ``fold``. 1 has each hit counted as it comes.
    """

    pending: list[float]
    most: int

    def fold(self) -> object:
        """Count the hits in ``pending`` and take them out of it (a copy
        first, then a deletion of what was copied: an append may come
        between the two)."""


class TallyFor(Protocol):
    """An observer's ``tally_for``: its ``Tally`` of the hits labelled by
    an event's first four fields, the same one for the same labels."""

    def __call__(
        self,
        door: str,
        limit: str,
        algorithm: str,
        outcome: Outcome,
        /,
    ) -> Tally: ...


def add(tally: Tally, latency: float) -> None:
    """Hand one hit of ``latency`` to ``tally``, as the engine does."""
    pending = tally.pending
    pending.append(latency)
    if len(pending) >= tally.most:
        tally.fold()


def taken(pending: list[float]) -> list[float]:
    """A tally's ``pending`` hits, taken out of it for its ``fold``, which
    holds a lock of its own over the call: two threads' folds must not both
    take one hit. Copying and deleting are each one step that no append
    splits: an append made between them stays, to be folded next time."""
    hits = pending[:]
    del pending[: len(hits)]
    return hits


def _tallies(observers: Iterable[Observer]) -> tuple[TallyFor, ...] | None:
    """The ``tally_for`` of each of ``observers``; None when one has none."""
    found = []
    for observer in observers:
        tally_for = getattr(observer, "tally_for", None)
        if not callable(tally_for):
            return None
        found.append(tally_for)
    return tuple(found)


#: The tallies of one tuple of labels, each as the engine hands it a hit:
#: its ``pending`` list, its ``most`` and its ``fold``.
Tallied = tuple[tuple[list[float], int, Callable[[], object]], ...]


class Observers(tuple[Observer, ...]):
    """A limiter's or throttle's own observers, and their ``tallies``.

    Attributes:
        tallies: each observer's ``tally_for``, or None when one has none.
        tallied: the tallies of the process's observers and then of these,
            by labels, found for the process's ``tallies`` of the first
            item (``luathrottle._outcomes``).
        alone: the tallies of the usual hit's labels, when the decider
            has one limit and no near-limit fraction: the process's
            ``tallies``, the check's limits and door they were found for,
            and the tallies.
    """

    tallies: tuple[TallyFor, ...] | None
    tallied: dict[Labels, tuple[tuple[TallyFor, ...], Tallied]]
    alone: tuple[tuple[TallyFor, ...] | None, object, str | None, Tallied]


class _Registry:
    """The process's observers, each with whether it sees raw identities,
    and their ``tallies``: new tuples at every change, so that reporting
    reads them without a lock, and deciders test them without a call.

    ``quiet`` holds while nobody can listen to any decision: the process
    has no observers, and no decider was made with observers of its own.
    Then one read tells a decider so, where asking a check for its own
    observers costs a field of a named tuple (``luathrottle._lone``)."""

    __slots__ = ("_changing", "observers", "owned", "quiet", "tallies")

    def __init__(self) -> None:
        self.observers: tuple[tuple[Observer, bool], ...] = ()
        self.tallies: tuple[TallyFor, ...] | None = ()
        self.owned = False
        self.quiet = True
        # Changes are rare; one at a time, so that a decider made with
        # observers of its own while the process's change never leaves the
        # process quiet.
        self._changing = threading.Lock()

    def set(self, observers: tuple[tuple[Observer, bool], ...]) -> None:
        with self._changing:
            # Never quiet for a moment while an observer is in: a decider
            # that read it so would not report its decision.
            if observers:
                self.quiet = False
            self.tallies = _tallies(observer for observer, _ in observers)
            self.observers = observers
            self.quiet = not observers and not self.owned

    def own(self) -> None:
        """A decider has observers of its own: the process is quiet no
        more, for good."""
        with self._changing:
            self.owned = True
            self.quiet = False


#: The process's observers.
REGISTRY = _Registry()


def add_observer(observer: Observer, *, identities: bool = False) -> None:
    """Report every decision of every limiter and throttle in the process
    to ``observer``.

    Args:
        observer: a callable taking a ``DecisionEvent``.
        identities: give it the raw identity in ``DecisionEvent.identity``;
            by default it only sees hashed keys.

    Raises:
        TypeError: ``observer`` is not callable.
    """
    if not callable(observer):
        raise TypeError(f"observer must be a callable, got {observer!r}")
    REGISTRY.set((*REGISTRY.observers, (observer, bool(identities))))


def remove_observer(observer: Observer) -> None:
    """Stop reporting to ``observer``, and to every observer added that
    equals it (``remove_observer(events.append)`` removes the
    ``events.append`` added earlier, another bound method of the same
    list); nothing happens if none was added."""
    REGISTRY.set(tuple(item for item in REGISTRY.observers if item[0] != observer))


def observed(own: tuple[Observer, ...]) -> bool:
    """Whether anyone listens: the process's observers, or ``own``."""
    return bool(REGISTRY.observers or own)


def check_observers(observers: object) -> Observers:
    """Validate a limiter's or throttle's ``observers=``: callables.

    Raises:
        TypeError: naming ``observers``.
    """
    if observers is None:
        observers = ()
    if isinstance(observers, str | bytes) or not isinstance(observers, Iterable):
        raise TypeError(f"observers must be a list of callables, got {observers!r}")
    checked = tuple(observers)
    for observer in checked:
        if not callable(observer):
            raise TypeError(
                f"observers must be a list of callables, got {observer!r} in it"
            )
    own = Observers(checked)
    if own:
        REGISTRY.own()
    own.tallies = _tallies(own)
    own.tallied = {}
    own.alone = (None, None, None, ())
    return own


def check_near_limit(near_limit: object) -> float | None:
    """Validate a decider's ``near_limit=``: None, or a fraction of a limit
    above 0 and below 1.

    Raises:
        TypeError, ValueError: naming ``near_limit``.
    """
    if near_limit is None:
        return None
    if isinstance(near_limit, bool) or not isinstance(near_limit, int | float):
        raise TypeError(
            f"near_limit must be a fraction such as 0.2, got {near_limit!r}"
        )
    if not 0 < near_limit < 1:
        raise ValueError(f"near_limit must be above 0 and below 1, got {near_limit!r}")
    return float(near_limit)


def check_shadow(shadow: object) -> bool:
    """Validate a decider's ``shadow=``.

    Raises:
        TypeError: naming ``shadow``.
    """
    if not isinstance(shadow, bool):
        raise TypeError(f"shadow must be True or False, got {shadow!r}")
    return shadow


def report(
    event: DecisionEvent, identity: str | None, own: tuple[Observer, ...]
) -> None:
    """Give ``event`` to the process's observers and to ``own``, the
    decider's, and the raw ``identity`` to those that asked for it; log it
    when it is a denial. An observer that raises is logged and skipped."""
    for observer, identities in REGISTRY.observers:
        try:
            observer(event._replace(identity=identity) if identities else event)
        except Exception:
            _failed(observer, event)
    for observer in own:
        try:
            observer(event)
        except Exception:
            _failed(observer, event)
    if event.outcome in DENIALS:
        door, limit, algorithm, outcome = event[:4]
        log_denial(limit, door, algorithm, outcome, event.key, event.retry_after)


def _failed(observer: Observer, event: DecisionEvent) -> None:
    logger.exception(
        "luathrottle observer %r failed on a %s event; skipped",
        observer,
        event.outcome,
    )


def tally_failed(tally: Callable[..., object], outcome: Outcome) -> None:
    """Log that an observer's ``tally_for``, or a tally's ``fold``, raised
    on a hit of ``outcome``, as a failed observer is; the hit goes on."""
    logger.exception(
        "luathrottle observer's tally %r failed on a %s hit; skipped",
        tally,
        outcome,
    )
