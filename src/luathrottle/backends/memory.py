"""The embedded backend: the very same Lua files, run in-process by lupa.

``MemoryBackend`` embeds LuaJIT (falling back to Lua 5.1 on a lupa built
without it), which runs the Lua 5.1 language that Redis embeds, with a small
keyspace written in Lua (``lua/embedded/memory_keyspace.lua``: GET, SET with
PX, DEL, PTTL, PEXPIRE, TYPE, DBSIZE, TIME, the hash commands of the hashed
scripts, and the sorted-set commands of the concurrency script) so that a
script call never crosses back into Python. RPUSH only marks a key as a
list, so that a script's GET meets WRONGTYPE there as on Redis. The runtime
starts on the backend's first call, not when it is built.

Keys expire lazily when read, and a sweep finds the expired keys nobody
reads, so that identities seen once do not pile up. Each key with an expiry
is filed under a second no later than the one it expires in; once a second
has passed, the sweep deletes its expired keys and files the others (their
expiry moved on) under their expiry's second. So it meets keys in the order
they expire and never walks over live ones, and new keys are filed ahead of
it, where they cannot disturb it. Every script call owes the sweep two keys
for each key it names (a hash named once per limit counts once), paid 32 at
a time, and makes it at most one key of work per key it names: a key is
filed when it gets an expiry or an earlier one, and again by the sweep at
most once per write that moved its expiry on. The sweep therefore works
twice as fast as calls make work for it: an expired key is gone within a
batch once its second has passed, unless many came due at once (the clock
jumped past every TTL), and then the sweep takes two of them for each key
calls name, while calls add at most one. Under churn, then, the keyspace
holds its live keys and little more: those that expired within the current
second or since the sweep's last batch (``tests/test_memory_sweep.py``).

Each script call is one call into the Lua runtime, which lupa holds a lock
for, so calls are atomic and one backend is safe to share between threads
and between asyncio tasks (a call never awaits). State is per process: use
Redis when several processes must share limits.
"""

import functools
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, ClassVar

from luathrottle._clock import check_clock, microseconds
from luathrottle.backends._lua import KeptArgv, LazyLua
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
    Like a server's, that time never goes back: a call whose reading is
    earlier than the latest call's runs at the latest (threads read the
    clock before they take turns).

    Args:
        clock: returns the current time in seconds; ``time.time`` by default.
    """

    #: The lupa module the scripts run on; None for the fastest there is.
    _runtime: ClassVar[ModuleType | None] = None

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = check_clock(clock)
        self._traits = StoreTraits(
            self, shared_across_processes=False, unsafe_reason=_UNSAFE
        )
        self._lua = LazyLua("memory", "memory_keyspace", self._runtime)
        # What every script call needs, kept here once the runtime has
        # started: its run_script entry point, each script's Lua function
        # by SHA1, and ARGV tables.
        self._entry: Any = None
        # The runtime's LuaError, once it has started: before that, no
        # script has run.
        self._error: type[Exception] = Exception
        self._functions: dict[str, Any] = {}
        self._argv = KeptArgv()

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
        clock = self._clock
        # Inlined _now_us: this is every hit's path.
        now = time.time_ns() // 1000 if clock is None else microseconds(clock)
        function = self._functions.get(script.sha)
        argv_key = args if type(args) is tuple else tuple(args)
        argv = self._argv.tables.get(argv_key)
        if function is None or argv is None:
            function, argv = self._prepare(script, argv_key)
        try:
            reply = self._entry(function, now, argv, *keys)
        except self._error as exc:
            raise ScriptError(f"{script.name}: {exc}") from exc
        # The keyspace made every field an integer; lupa returns several
        # values as a tuple, one as itself, and none as None.
        if type(reply) is tuple:
            return list(reply)
        return [] if reply is None else [reply]

    _run_script = run_script

    def _prepare(self, script: Script, args: tuple[str, ...]) -> tuple[Any, Any]:
        """Start the runtime if need be, and give ``script`` as a Lua
        function and ``args`` as a Lua table, keeping both.

        Raises:
            ScriptError: ``script`` does not compile.
        """
        lua = self._lua.get()
        self._entry, self._error = lua.entry_points[0], lua.error
        try:
            function = lua.function(script)
        except lua.error as exc:
            raise ScriptError(f"{script.name}: {exc}") from exc
        self._functions[script.sha] = function
        return function, self._argv.table(lua.runtime, args)

    def command(self, *args: str | int) -> Any:
        """Run one keyspace command (GET, SET, DEL, PTTL, PEXPIRE, TYPE,
        DBSIZE, TIME, HSET, HMGET, HDEL, HGETALL, ZADD, ZREM, ZSCORE, ZCARD,
        ZRANGE, ZREMRANGEBYSCORE, and RPUSH, which only marks a key's type),
        as in Redis; DBSIZE counts expired keys that were not swept yet."""
        now = self._now_us()
        lua = self._lua.get()
        try:
            reply = lua.entry_points[1](now, *args)
        except lua.error as exc:
            raise ScriptError(f"{args[0]}: {exc}") from exc
        if lua.module.lua_type(reply) == "table":
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


@functools.cache
def _default_memory() -> MemoryBackend:
    """The process-wide store of limiters given no backend, built when the
    first of them is."""
    return MemoryBackend()
