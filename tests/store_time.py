"""Stores whose lease calls run at a test clock's time.

A concurrency limiter takes no client clock: its leases expire on the
store's clock. ``MemoryBackend(clock=...)`` moves the embedded store's clock;
a real server's cannot move, so ``OnClock`` and ``AsyncOnClock`` hand each
script call of a real store the test's time, in the argument that
``lua/concurrency.lua`` reads as now instead of the server's TIME (ARGV[3]),
and pass everything else through to the store.
"""

from collections.abc import Callable, Sequence

from luathrottle.backends.base import AsyncBackend, StoreTraits, SyncBackend
from luathrottle.scripts import Script


def _on(clock: Callable[[], float], args: Sequence[str]) -> list[str]:
    mode, lease_id, _now, *limits = args
    return [mode, lease_id, str(round(clock() * 1_000_000)), *limits]


class OnClock(SyncBackend):
    def __init__(self, store: SyncBackend, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    def traits(self) -> StoreTraits:
        return self.store.traits()

    def _run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        return self.store.run_script(script, keys, _on(self.clock, args))

    def delete_keys(self, keys: Sequence[str]) -> None:
        self.store.delete_keys(keys)

    def load_script(self, script: Script) -> None:
        self.store.load_script(script)


class AsyncOnClock(AsyncBackend):
    def __init__(self, store: AsyncBackend, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    def traits(self) -> StoreTraits:
        return self.store.traits()

    async def _arun_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        return await self.store.arun_script(script, keys, _on(self.clock, args))

    async def adelete_keys(self, keys: Sequence[str]) -> None:
        await self.store.adelete_keys(keys)

    async def aload_script(self, script: Script) -> None:
        await self.store.aload_script(script)
