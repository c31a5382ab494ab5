"""What a backend does: run script calls, delete keys, prepare scripts.

Backends only move bytes. They hold no state per algorithm or limiter, so one
backend object serves every limiter and throttle at once.
"""

import abc
from collections.abc import Sequence

from luathrottle._text import indefinite
from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.failures import CircuitBreaker
from luathrottle.scripts import Script

__all__ = ["AsyncBackend", "ScriptCall", "SyncBackend", "check_backend_kind"]

#: One script call: the script, its KEYS and its ARGV.
ScriptCall = tuple[Script, Sequence[str], Sequence[str]]


class SyncBackend(abc.ABC):
    """A store that sync limiters and throttles run scripts on."""

    #: True when one script call may only take keys of one hash slot, as on
    #: Redis Cluster; callers then split calls by hash tag.
    single_slot_calls: bool = False
    #: Trips when the store keeps failing; None for stores that cannot fail.
    breaker: CircuitBreaker | None = None

    @abc.abstractmethod
    def run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        """Run ``script`` atomically with KEYS and ARGV; return its reply.

        Raises:
            BackendError: the store failed; the cause is chained.
        """
        raise NotImplementedError("SyncBackend subclasses must define run_script()")

    def run_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        """Run several script calls, each atomic on its own, not together.

        Backends that can send them in one round trip (a Redis pipeline) do;
        this default runs them in turn.

        Raises:
            BackendError: the store failed; calls before the failure ran.
        """
        return [self.run_script(*call) for call in calls]

    @abc.abstractmethod
    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys``, present or not."""
        raise NotImplementedError("SyncBackend subclasses must define delete_keys()")

    @abc.abstractmethod
    def initialize_algorithm(self, algorithm: BaseThrottleAlgorithm) -> None:
        """Prepare the algorithm's script here, ahead of the first call.

        Running a script the store does not know yet loads it anyway; this
        only moves that work out of the first request.
        """
        raise NotImplementedError(
            "SyncBackend subclasses must define initialize_algorithm()"
        )


class AsyncBackend(abc.ABC):
    """A store that async limiters and throttles run scripts on."""

    #: True when one script call may only take keys of one hash slot, as on
    #: Redis Cluster; callers then split calls by hash tag.
    single_slot_calls: bool = False
    #: Trips when the store keeps failing; None for stores that cannot fail.
    breaker: CircuitBreaker | None = None

    @abc.abstractmethod
    async def arun_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        """Run ``script`` atomically with KEYS and ARGV; return its reply.

        Raises:
            BackendError: the store failed; the cause is chained.
        """
        raise NotImplementedError("AsyncBackend subclasses must define arun_script()")

    async def arun_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        """Run several script calls, each atomic on its own, not together."""
        return [await self.arun_script(*call) for call in calls]

    @abc.abstractmethod
    async def adelete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys``, present or not."""
        raise NotImplementedError("AsyncBackend subclasses must define adelete_keys()")

    @abc.abstractmethod
    async def ainitialize_algorithm(self, algorithm: BaseThrottleAlgorithm) -> None:
        """Prepare the algorithm's script here, ahead of the first call."""
        raise NotImplementedError(
            "AsyncBackend subclasses must define ainitialize_algorithm()"
        )


def check_backend_kind(backend: object, kind: type, owner: str) -> None:
    """Check that ``backend`` is of the ``kind`` that ``owner`` runs on.

    Raises:
        TypeError: naming ``backend``, what it is and what ``owner`` needs.
    """
    if not isinstance(backend, kind):
        raise TypeError(
            f"backend must be {indefinite(kind.__name__)} for {owner}, got "
            f"{type(backend).__module__}.{type(backend).__qualname__}"
        )
