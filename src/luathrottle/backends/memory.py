"""The embedded backend: the very same Lua files, run in-process by lupa.

``MemoryBackend`` embeds Lua 5.1, the Lua that Redis embeds, with a small
keyspace written in Lua (GET, SET with PX, DEL, PTTL, DBSIZE, TIME) so that
a script call never crosses back into Python. HSET and RPUSH only mark a
key as a hash or a list, so that a script's GET meets WRONGTYPE there as on
Redis. Keys expire lazily when read, and every script call also sweeps two
keys for each key it names, so expired keys never make up more than half of
the keyspace.

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
from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.backends._lua import EmbeddedLua, LuaError
from luathrottle.backends.base import AsyncBackend, ScriptCall, SyncBackend
from luathrottle.exceptions import BackendError
from luathrottle.scripts import Script

__all__ = ["MemoryBackend"]

_KEYSPACE = """
local data, expires = {}, {}
-- Keys of another type than string, by name: only their type is kept.
-- Looked up only when data misses, so string keys pay nothing for them.
local types = {}
local WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value'

local cursor = nil
-- A call sweeps this many keys for each key it names. It writes at most one
-- key per name, so expired keys are found faster than calls can add keys (at
-- worst half the keyspace is expired), and a call costs the same however
-- large the keyspace grows.
local SWEEP_PER_KEY = 2

local function expired(key)
  local at = expires[key]
  if at and at <= clock.now then
    data[key], expires[key] = nil, nil
    return true
  end
  return false
end

local function sweep(count)
  if cursor ~= nil and expires[cursor] == nil then
    cursor = nil
  end
  for _ = 1, count do
    local key = next(expires, cursor)
    if key == nil then
      cursor = nil
      return
    end
    cursor = key
    expired(key)
  end
end

function commands.GET(key)
  if expired(key) or data[key] == nil then
    if types[key] then error(WRONGTYPE, 0) end
    return false
  end
  return data[key]
end
local function typed(kind)
  return function(key)
    if data[key] ~= nil and not expired(key) then error(WRONGTYPE, 0) end
    types[key] = kind
    return 1
  end
end
commands.HSET = typed('hash')
commands.RPUSH = typed('list')
function commands.SET(key, value, option, ttl)
  data[key] = tostring(value)
  types[key] = nil
  expires[key] = nil
  if option ~= nil then
    expires[key] = clock.now + px_ms(option, ttl) * 1000
  end
  return {ok = 'OK'}
end
function commands.DEL(...)
  local deleted = 0
  for _, key in ipairs({...}) do
    if not expired(key) and data[key] ~= nil or types[key] then
      deleted = deleted + 1
    end
    data[key], expires[key], types[key] = nil, nil, nil
  end
  return deleted
end
function commands.PTTL(key)
  if types[key] then return -1 end
  if expired(key) or data[key] == nil then return -2 end
  local at = expires[key]
  if at == nil then return -1 end
  return math.floor((at - clock.now + 999) / 1000)
end
function commands.DBSIZE()
  local size = 0
  for _ in pairs(data) do size = size + 1 end
  for _ in pairs(types) do size = size + 1 end
  return size
end

local function run_script(script, clock_us, nkeys, ...)
  clock.now = clock_us
  sweep(SWEEP_PER_KEY * nkeys)
  return unpack(call_script(script, nkeys, ...))
end

local function run_command(clock_us, ...)
  clock.now = clock_us
  return redis.call(...)
end

return run_script, run_command
"""


class MemoryBackend(SyncBackend, AsyncBackend):
    """An in-process store that runs the Lua scripts through lupa.

    Serves sync and async limiters alike. Its TIME is ``clock``, so a test
    can move the embedded server's time exactly as it moves a real one's.

    Args:
        clock: returns the current time in seconds; ``time.time`` by default.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = check_clock(clock)
        self._lua = EmbeddedLua("memory", _KEYSPACE)
        self._run_script, self._run_command = self._lua.entry_points

    def _now_us(self) -> int:
        if self._clock is None:
            return time.time_ns() // 1000
        return microseconds(self._clock)

    def run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        """Run ``script`` atomically in the embedded Lua."""
        now = self._now_us()
        try:
            reply = self._run_script(
                self._lua.function(script), now, len(keys), *keys, *args
            )
        except LuaError as exc:
            raise BackendError(f"{script.name}: {exc}") from exc
        return self._lua.integers(reply)

    def command(self, *args: str | int) -> Any:
        """Run one keyspace command (GET, SET, DEL, PTTL, DBSIZE, TIME, and
        HSET and RPUSH, which only mark a key's type), as in Redis; DBSIZE
        counts expired keys that were not swept yet."""
        now = self._now_us()
        try:
            reply = self._run_command(now, *args)
        except LuaError as exc:
            raise BackendError(f"{args[0]}: {exc}") from exc
        if lupa.lua_type(reply) == "table":
            return list(reply.values())
        return reply

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys``."""
        if keys:
            self.command("DEL", *keys)

    def initialize_algorithm(self, algorithm: BaseThrottleAlgorithm) -> None:
        """Compile the algorithm's script into the embedded Lua."""
        self._lua.function(algorithm.script)

    async def arun_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        """Run ``script``; it never blocks on I/O, so it never awaits."""
        return self.run_script(script, keys, args)

    async def arun_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        """Run several script calls, each atomic on its own, not together."""
        return self.run_scripts(calls)

    async def adelete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys``."""
        self.delete_keys(keys)

    async def ainitialize_algorithm(self, algorithm: BaseThrottleAlgorithm) -> None:
        """Compile the algorithm's script into the embedded Lua."""
        self.initialize_algorithm(algorithm)

    def __repr__(self) -> str:
        return "MemoryBackend()"
