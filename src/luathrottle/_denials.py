"""A process's memory of denials (``cache_denials=``).

A client that hammers a spent limit costs one script call per request. The
cache keeps, per identity, the reply of the last denial the store gave, the
cost it denied and the time its call was sent, until that denial's
``retry_after``, and answers later calls for the identity itself when the
remembered denial proves they are denied too. Anything it cannot prove goes
to the store.

Why a remembered denial stays right: without a reset, the quota a store
holds for an identity only refills with time, as a window ends, a bucket
drains or a previous window weighs less, never faster than the denial's
reply says. So a state aged from the remembered one by the time since the
denied call was sent is at most as full as the store's, and a hit it finds
denied is denied by the store. A cache replays one algorithm, the one it
was built for (``_replays``), in one of two ways:

- Exactly, for SimpleRate, LeakyBucket and TokenBucket, whose reply
  carries their whole state (a window's count and end, a bucket's level or
  debt): the script's arithmetic runs on the aged state, and the reply is
  the store's when no other process spent anything in between (its fields
  are what this process knows). Until ``retry_after`` a hit of at least the
  denied cost is always denied this way; a smaller one is answered here
  only when the replay proves that it does not fit either.
- Generically, for SlidingWindow, whose reply does not carry the two
  windows' counts. Limit by limit: a cost above ``max_requests`` never
  fits; a cost of at most the ``remaining`` the denial saw still fits (as
  far as this process knows); a limit that denied the remembered cost
  denies any cost at least as large until its ``retry_after``, however
  others spend. A call proven denied by one limit and decided by every
  limit is answered: until ``retry_after`` a hit of the denied cost is,
  unless another limit that denied it too has come free since, and a larger
  one is when every other limit's ``remaining`` settles it. Its reply has
  the store's ``allowed`` and ``reason``, limit by limit; ``reset_after``
  and ``retry_after`` counted down from the denial's, the store's instants
  when no one else spent, and ``retry_after`` never later than the
  store's (for a larger cost, it is the denied cost's wait); and the
  denial's ``remaining``, which the store's may have passed since, as the
  previous window weighs less.

An algorithm of one's own has a script the cache does not know, whose
quota may not only refill with time: ``denial_cache`` refuses
``cache_denials`` with it, rather than accept the option and ignore it.

Time: the limiter's clock when it has one (the very reading the script
used), else ``time.monotonic``, read before the call is sent, so an entry
never outlives the store's wait as the server measured it (up to the
difference in one-way latency between two calls).

An entry is keyed by every state key of its call, and a state key names
its identity, scope and limit's counter (its name or window, not its
numbers): an entry remembers the limits it was learned under, and a call
under other limits (a per-call ``limits=``, another plan of the same
window) is never answered from a denial it did not get, but asks the
store, and the store's denial replaces the entry.

A reset through the same limiter or throttle forgets every entry that names
one of the keys it deletes, and makes every call already in flight forget
what it learns; a reset from another process is only seen when the entry
ends, at ``retry_after`` at the latest. Denials because a cost exceeds a
limit are not remembered (a caller's bug, not traffic); neither are
failure-policy decisions, nor a peek's denials: a state counted under
other numbers is converted to the limits a call gives, and a hit writes it
so converted, but a peek only reads it, so the store's state does not age
as the peek's reply would.

Calls with a limit that has a penalty (``Limit(penalty=...)``) always go
to the store, and their denials are not remembered: a reply shows a
penalty's wait as a wait, with no way to tell it from the count's, so no
replay could age it exactly.

The cache is an LRU of at most ``size`` identities behind one lock, held
only for dictionary operations (never across an await or a store call),
so threads and asyncio tasks share it safely.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

from luathrottle._clock import Clock, microseconds
from luathrottle._replays import EXCEEDED, FIELDS, Replay, replay_of
from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.rates import Limit

__all__ = ["DEFAULT_SIZE", "MAX_SIZE", "DenialCache", "denial_cache"]

#: Identities a cache holds when ``cache_denials=True``.
DEFAULT_SIZE = 10_000
#: The most identities a cache may hold: an entry costs about 400 bytes, so
#: this many cost about 400 MB.
MAX_SIZE = 1_000_000


class _Entry:
    __slots__ = ("cost", "expires_us", "limits", "reply", "sent_us")

    def __init__(
        self,
        sent_us: int,
        expires_us: int,
        reply: list[int],
        cost: int,
        limits: tuple[Limit, ...],
    ) -> None:
        self.sent_us = sent_us
        self.expires_us = expires_us
        self.reply = reply
        self.cost = cost
        self.limits = limits


class DenialCache:
    """Denials one process remembers, for at most ``size`` identities.

    Args:
        size: identities kept; the least recently used goes first.
        replay: how the algorithm's denials answer later calls
            (``replay_of``).
        clock: the limiter's clock, or None for ``time.monotonic``.
    """

    def __init__(self, size: int, replay: Replay, clock: Clock | None = None) -> None:
        self.size = size
        self._replay = replay
        self._clock = clock
        self._entries: OrderedDict[tuple[str, ...], _Entry] = OrderedDict()
        # The entries that name each state key: a call admitted on a key
        # spent quota there, so every entry naming it is dropped, whatever
        # limits it was for.
        self._naming: dict[str, set[tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        # Bumped by every reset, so a denial learned by a call sent before
        # it is not remembered after it.
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._entries)

    def now(self) -> int:
        """The cache's time, in microseconds; read it before a call is sent."""
        if self._clock is not None:
            return microseconds(self._clock)
        return time.monotonic_ns() // 1000

    def answer(
        self,
        keys: tuple[str, ...],
        limits: Sequence[Limit],
        cost: int,
        now_us: int,
    ) -> list[int] | None:
        """The script's reply for a call on the state ``keys`` (one per
        limit of ``limits``) of ``cost`` at ``now_us``, when the remembered
        denial proves it denied; None to ask the store."""
        if not self._entries or _penalised(limits):
            return None
        with self._lock:
            entry = self._entries.get(keys)
            if entry is None:
                return None
            if now_us >= entry.expires_us:
                self._drop(keys)
                return None
            self._entries.move_to_end(keys)
        if entry.limits != tuple(limits):
            return None
        elapsed = max(now_us - entry.sent_us, 0)
        return self._replay(limits, entry.reply, entry.cost, cost, elapsed)

    def learn(
        self,
        keys: tuple[str, ...],
        limits: Sequence[Limit],
        cost: int,
        reply: Sequence[int],
        sent_us: int,
        epoch: int,
    ) -> None:
        """Remember the store's ``reply`` to a hit of ``cost`` sent at
        ``sent_us`` (when the cache's ``epoch`` was ``epoch``) on the state
        ``keys``, if it is a denial that ends; drop every entry that names
        one of ``keys`` first: an admitted hit spent quota there, and a
        denied one may have converted a state counted under other limits,
        which an entry learned under those would not age as the store
        does."""
        if self._naming and any(key in self._naming for key in keys):
            with self._lock:
                self._drop_naming(keys)
        if _penalised(limits):
            return
        fields = FIELDS * len(limits)
        statuses = reply[0:fields:FIELDS]
        waits = [
            reply[FIELDS * index + 4]
            for index, status in enumerate(statuses)
            if status == EXCEEDED
        ]
        if not waits:
            return
        entry = _Entry(
            sent_us, sent_us + max(waits), list(reply[:fields]), cost, tuple(limits)
        )
        with self._lock:
            if epoch != self.epoch:
                return
            if keys not in self._entries:
                for key in keys:
                    self._naming.setdefault(key, set()).add(keys)
            self._entries[keys] = entry
            self._entries.move_to_end(keys)
            while len(self._entries) > self.size:
                self._drop(next(iter(self._entries)))

    def forget(self, keys: Sequence[str]) -> None:
        """Drop every entry that names one of the state ``keys``, and what
        every call in flight would learn."""
        with self._lock:
            self.epoch += 1
            self._drop_naming(keys)

    def _drop(self, keys: tuple[str, ...]) -> None:
        # Under the lock.
        del self._entries[keys]
        for key in keys:
            naming = self._naming[key]
            naming.discard(keys)
            if not naming:
                del self._naming[key]

    def _drop_naming(self, keys: Sequence[str]) -> None:
        # Under the lock.
        for key in keys:
            for entry_keys in list(self._naming.get(key, ())):
                self._drop(entry_keys)


def _penalised(limits: Sequence[Limit]) -> bool:
    """Whether a limit has a penalty: its denials are not replayed, as a
    reply does not tell the penalty's end from its count's."""
    return any(limit.penalty is not None for limit in limits)


def denial_cache(
    cache_denials: object, algorithm: BaseThrottleAlgorithm, clock: Clock | None
) -> DenialCache | None:
    """The cache ``cache_denials`` asks for, replaying ``algorithm``'s
    denials: None for False, ``DEFAULT_SIZE`` identities for True, or that
    many for an int, up to ``MAX_SIZE``.

    Raises:
        TypeError, ValueError: naming ``cache_denials``; ValueError too when
            the cache cannot replay ``algorithm`` (one of one's own).
    """
    if cache_denials is False or cache_denials is None:
        return None
    if cache_denials is True:
        size = DEFAULT_SIZE
    elif not isinstance(cache_denials, int):
        raise TypeError(
            "cache_denials must be a bool or a number of identities, got "
            f"{type(cache_denials).__name__} {cache_denials!r}"
        )
    elif not 1 <= cache_denials <= MAX_SIZE:
        raise ValueError(
            f"cache_denials must be between 1 and {MAX_SIZE:,} identities (about "
            f"400 bytes each), got {cache_denials!r}"
        )
    else:
        size = cache_denials
    replay = replay_of(algorithm)
    if replay is None:
        raise ValueError(
            f"cache_denials cannot be used with {algorithm!r}: the denial cache "
            "replays the scripts of SimpleRate, LeakyBucket, TokenBucket and "
            f"SlidingWindow, not {algorithm.script.name!r}"
        )
    return DenialCache(size, replay, clock)
