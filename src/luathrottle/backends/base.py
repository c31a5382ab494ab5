"""What a backend does: run one script call, delete keys, prepare scripts.

Backends only move bytes. They hold no state per algorithm or limiter, so one
backend object serves every limiter and throttle at once.
"""

import abc
from collections.abc import Sequence

from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.scripts import Script

__all__ = ["AsyncBackend", "SyncBackend"]


class SyncBackend(abc.ABC):
    """A store that sync limiters and throttles run scripts on."""

    @abc.abstractmethod
    def run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        """Run ``script`` atomically with KEYS and ARGV; return its reply.

        Raises:
            BackendError: the store failed; the cause is chained.
        """
        raise NotImplementedError("SyncBackend subclasses must define run_script()")

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

    @abc.abstractmethod
    async def arun_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        """Run ``script`` atomically with KEYS and ARGV; return its reply.

        Raises:
            BackendError: the store failed; the cause is chained.
        """
        raise NotImplementedError("AsyncBackend subclasses must define arun_script()")

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
