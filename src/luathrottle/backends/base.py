"""The backend contract: what every store does, and the one place where the
circuit breaker guards it.

A backend runs script calls, deletes keys, loads scripts, and describes its
store with ``traits()``. Callers (limiters, throttles, the Django views and
checks) use only this contract; they never ask what class a backend is.

The public ``run_script``/``run_scripts`` (and their async twins) run the
subclass's ``_run_script``/``_run_scripts`` inside the backend's guard: its
``CircuitBreaker``, or nothing. Every way a call can end updates the breaker
there (see ``luathrottle._breaker``), and callers only ever see a reply or a
``BackendError``. Backends hold no state per algorithm or limiter, so one
backend object serves every limiter and throttle at once.
"""

import abc
from collections.abc import Hashable, Sequence
from typing import NamedTuple

from luathrottle._breaker import UNGUARDED, CircuitBreaker, Guard
from luathrottle._text import indefinite
from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.scripts import Script

__all__ = [
    "AsyncBackend",
    "ScriptCall",
    "StoreTraits",
    "SyncBackend",
]

#: One script call: the script, its KEYS and its ARGV.
ScriptCall = tuple[Script, Sequence[str], Sequence[str]]


class StoreTraits(NamedTuple):
    """What a backend's store is, as callers need to know it.

    Attributes:
        identity: equal for backends on one store (two Django-cache backends
            on one alias, say), whose calls may share one script call.
        single_slot_calls: one script call may only take keys of one hash
            slot, as on Redis Cluster; callers then split calls by hash tag.
        shared_across_processes: every process sees the same state.
        unsafe_reason: why the store cannot keep limits exact (not shared
            across processes, or not atomic there); None when it can.
        sorted_sets: one script call can keep a sorted set atomically, as
            concurrency leases need (Redis, MemoryBackend); False where
            scripts run over a snapshot of string keys (a Django cache that
            is not Redis-backed).
    """

    identity: Hashable
    single_slot_calls: bool = False
    shared_across_processes: bool = True
    unsafe_reason: str | None = None
    sorted_sets: bool = True


class _Contract(abc.ABC):
    """What both twins share: the guard, traits and the configuration check."""

    #: Guards every script call; ``UNGUARDED`` for stores that cannot fail.
    _guard: Guard = UNGUARDED

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker around this backend's calls, if it has one."""
        guard = self._guard
        return guard if isinstance(guard, CircuitBreaker) else None

    @abc.abstractmethod
    def traits(self) -> StoreTraits:
        """Describe the store.

        ``identity`` and ``single_slot_calls`` never change for one backend
        object; the rest may depend on configuration (a Django cache alias
        is looked up in ``settings.CACHES``).

        Raises:
            ValueError: the backend's configuration names nothing usable.
        """
        raise NotImplementedError(f"{type(self).__name__} must define traits()")

    def check(self) -> None:
        """Check the backend's configuration; nothing to check by default.

        Raises:
            ValueError: naming what is missing, such as a cache alias.
        """
        return None


class SyncBackend(_Contract):
    """A store that sync limiters and throttles run scripts on.

    Subclasses define ``_run_script`` (and ``_run_scripts`` when they can
    send several calls at once), ``delete_keys``, ``load_script`` and
    ``traits``; the public methods add the guard.
    """

    def run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        """Run ``script`` atomically with KEYS and ARGV; return its reply.

        Raises:
            BackendError: the store failed, or the breaker is open
                (``CircuitOpenError``); the cause is chained.
        """
        with self._guard:
            return self._run_script(script, keys, args)

    def run_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        """Run several script calls, each atomic on its own, not together.

        Backends that can send them in one round trip (a Redis pipeline) do.

        Raises:
            BackendError: the store failed, or the breaker is open.
        """
        with self._guard:
            return self._run_scripts(calls)

    @abc.abstractmethod
    def _run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        raise NotImplementedError("SyncBackend subclasses must define _run_script()")

    def _run_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        return [self._run_script(*call) for call in calls]

    @abc.abstractmethod
    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys``, present or not."""
        raise NotImplementedError("SyncBackend subclasses must define delete_keys()")

    @abc.abstractmethod
    def load_script(self, script: Script) -> None:
        """Prepare ``script`` here, ahead of its first call.

        Running a script the store does not know yet loads it anyway; this
        only moves that work out of the first request.
        """
        raise NotImplementedError("SyncBackend subclasses must define load_script()")

    def initialize_algorithm(self, algorithm: BaseThrottleAlgorithm) -> None:
        """Prepare the algorithm's script here, ahead of the first call."""
        self.load_script(algorithm.script)


class AsyncBackend(_Contract):
    """A store that async limiters and throttles run scripts on; the twin of
    ``SyncBackend``, with awaitable methods."""

    async def arun_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        """Run ``script`` atomically with KEYS and ARGV; return its reply.

        Raises:
            BackendError: the store failed, or the breaker is open.
        """
        with self._guard:
            return await self._arun_script(script, keys, args)

    async def arun_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        """Run several script calls, each atomic on its own, not together."""
        with self._guard:
            return await self._arun_scripts(calls)

    @abc.abstractmethod
    async def _arun_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        raise NotImplementedError("AsyncBackend subclasses must define _arun_script()")

    async def _arun_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        return [await self._arun_script(*call) for call in calls]

    @abc.abstractmethod
    async def adelete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys``, present or not."""
        raise NotImplementedError("AsyncBackend subclasses must define adelete_keys()")

    @abc.abstractmethod
    async def aload_script(self, script: Script) -> None:
        """Prepare ``script`` here, ahead of its first call."""
        raise NotImplementedError("AsyncBackend subclasses must define aload_script()")

    async def ainitialize_algorithm(self, algorithm: BaseThrottleAlgorithm) -> None:
        """Prepare the algorithm's script here, ahead of the first call."""
        await self.aload_script(algorithm.script)


def check_backend_kind(
    backend: object, kind: type, owner: str, twin: str | None = None
) -> None:
    """Check that ``backend`` is of the ``kind`` that ``owner`` runs on.

    Args:
        backend: what the user gave.
        kind: ``SyncBackend`` or ``AsyncBackend``.
        owner: what the user built, as they wrote it.
        twin: ``owner``'s twin of the other kind, if it has one.

    Raises:
        TypeError: naming ``backend``, what it is, what ``owner`` needs, and
            what to write instead.
    """
    if not isinstance(backend, kind):
        raise TypeError(
            f"backend must be {indefinite(kind.__name__)} for {owner}, got "
            f"{type(backend).__module__}.{type(backend).__qualname__}: "
            + _instead(backend, kind, twin)
        )


def _instead(backend: object, kind: type, twin: str | None) -> str:
    """What to write instead of ``backend``."""
    wanted = "SyncRedis" if kind is SyncBackend else "AsyncRedis"
    if isinstance(backend, str):
        alias = (
            " or SyncDjangoCache(alias) for a Django cache"
            if kind is SyncBackend
            else ""
        )
        return (
            f"give a backend object, such as {wanted}.from_url"
            f"('redis://localhost:6379/0'){alias}"
        )
    module = type(backend).__module__.partition(".")[0]
    if module in ("redis", "valkey"):
        return f"wrap the client, {wanted}(client)"
    other = "sync" if kind is AsyncBackend else "async"
    fix = f"give {indefinite(wanted)}"
    if isinstance(backend, SyncBackend | AsyncBackend) and twin is not None:
        return f"{fix}, or use {twin} for {indefinite(other)} backend"
    return fix
