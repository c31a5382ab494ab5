"""The embedded backend: the very same Lua files, run in-process by lupa.

``MemoryBackend`` embeds Lua 5.1, the Lua that Redis embeds, with a small
keyspace written in Lua (``lua/embedded/memory_keyspace.lua``: GET, SET with
PX, DEL, PTTL, PEXPIRE, TYPE, DBSIZE, TIME, the hash commands of the hashed
scripts, and the sorted-set commands of the concurrency script) so that a
script call never crosses back into Python. RPUSH only marks a key as a
list, so that a script's GET meets WRONGTYPE there as on Redis. The runtime
starts on the backend's first call, not when it is built. Keys expire lazily
when read, and every script call also sweeps two keys for each key it names,
so expired keys never make up more than half of the keyspace.

Each script call is one call into the Lua runtime, which lupa holds a lock
for, so calls are atomic and one backend is safe to share between threads
and between asyncio tasks (a call never awaits). State is per process: use
Redis when several processes must share limits.
"""

import time
from collections.abc import Callable, Sequence
from typing import Any

import lupa.lua51 as lupa

from luathrottle._clock import check_clock, microseconds
from luathrottle.backends._lua import LazyLua, LuaError
from luathrottle.backends.base import (
    AsyncBackend,
    ScriptCall,
    StoreTraits,
    SyncBackend,
)
from luathrottle.exceptions import ScriptError
from luathrottle.scripts import Script

__all__ = ["MemoryBackend"]

_UNSAFE = (
    "MemoryBackend keeps its state in each process: N processes admit up to "
    "N times the limit"
)


class MemoryBackend(SyncBackend, AsyncBackend):
    """An in-process store that runs the Lua scripts through lupa.

    Serves sync and async limiters alike. Its TIME is ``clock``, so a test
    can move the embedded server's time exactly as it moves a real one's.

    Args:
        clock: returns the current time in seconds; ``time.time`` by default.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = check_clock(clock)
        self._traits = StoreTraits(
            self, shared_across_processes=False, unsafe_reason=_UNSAFE
        )
        self._lua = LazyLua("memory", "memory_keyspace")

    def _now_us(self) -> int:
        if self._clock is None:
            return time.time_ns() // 1000
        return microseconds(self._clock)

    def traits(self) -> StoreTraits:
        """A store of this process alone, which is why it is unsafe."""
        return self._traits

    # Nothing here can trip a breaker, so the public methods skip the guard
    # and the extra call it costs.
    def run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        """Run ``script`` atomically in the embedded Lua."""
        now = self._now_us()
        lua = self._lua.get()
        try:
            reply = lua.entry_points[0](
                lua.function(script), now, len(keys), *keys, *args
            )
        except LuaError as exc:
            raise ScriptError(f"{script.name}: {exc}") from exc
        # The reply comes unpacked: several values are a tuple, none is None.
        return [] if reply is None else lua.integers(reply)

    _run_script = run_script

    def command(self, *args: str | int) -> Any:
        """Run one keyspace command (GET, SET, DEL, PTTL, PEXPIRE, TYPE,
        DBSIZE, TIME, HSET, HMGET, HDEL, HGETALL, ZADD, ZREM, ZSCORE, ZCARD,
        ZRANGE, ZREMRANGEBYSCORE, and RPUSH, which only marks a key's type),
        as in Redis; DBSIZE counts expired keys that were not swept yet."""
        now = self._now_us()
        lua = self._lua.get()
        try:
            reply = lua.entry_points[1](now, *args)
        except LuaError as exc:
            raise ScriptError(f"{args[0]}: {exc}") from exc
        if lupa.lua_type(reply) == "table":
            return list(reply.values())
        return reply

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys``."""
        if keys:
            self.command("DEL", *keys)

    def load_script(self, script: Script) -> None:
        """Compile ``script`` into the embedded Lua.

        Raises:
            BackendError: it does not compile.
        """
        self._lua.compile(script)

    async def arun_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        """Run ``script``; it never blocks on I/O, so it never awaits."""
        return self.run_script(script, keys, args)

    async def _arun_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        return self.run_script(script, keys, args)

    async def _arun_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        return self._run_scripts(calls)

    async def adelete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys``."""
        self.delete_keys(keys)

    async def aload_script(self, script: Script) -> None:
        """Compile ``script`` into the embedded Lua."""
        self.load_script(script)

    def __repr__(self) -> str:
        return "MemoryBackend()"
