"""Embedded Lua 5.1 (through lupa) for the backends that run scripts in-process.

``EmbeddedLua`` owns one runtime and gives each keyspace the pieces that do
not depend on where keys live: Redis's ``redis.call`` dispatch, ``TIME``,
the ``SET ... PX ms`` option, splitting a call into KEYS and ARGV, compiling
scripts once per SHA1, and turning replies into integers as Redis does.

A keyspace chunk is Lua appended to that prelude. It sees the locals
``commands`` (fill in GET, SET, DEL...), ``clock`` (set ``clock.now`` in
microseconds before a call), ``px_ms(option, ttl)`` and ``call_script(script,
nkeys, ...)``, and returns the entry points Python calls.
"""

from collections.abc import Iterable
from typing import Any

import lupa.lua51 as lupa

from luathrottle.scripts import Script

__all__ = ["EmbeddedLua", "LuaError"]

LuaError = lupa.LuaError

_PRELUDE = """
local BACKEND = %s
local clock = {now = 0}
local commands = {}

function commands.TIME()
  local seconds = math.floor(clock.now / 1000000)
  return {tostring(seconds), tostring(clock.now - seconds * 1000000)}
end

redis = {}
function redis.call(name, ...)
  -- Scripts name commands in capitals; only others pay for upper().
  local command = commands[name] or commands[string.upper(name)]
  if command == nil then
    error('ERR unknown command ' .. tostring(name) .. ' in the ' .. BACKEND ..
      ' backend')
  end
  return command(...)
end

local function px_ms(option, ttl)
  if (option ~= 'PX' and string.upper(option) ~= 'PX') or tonumber(ttl) == nil then
    error('ERR ' .. BACKEND .. ' backend supports only SET key value [PX ms]')
  end
  return tonumber(ttl)
end

local function call_script(script, nkeys, ...)
  local keys, args = {...}, {}
  for i = nkeys + 1, #keys do
    args[i - nkeys] = keys[i]
    keys[i] = nil
  end
  return script(keys, args)
end
"""


class EmbeddedLua:
    """One Lua 5.1 runtime with a keyspace chunk loaded into it.

    lupa locks the runtime for the length of each call from Python, so a
    keyspace whose entry points do a whole script call at once needs no
    further lock to keep calls apart.

    Args:
        backend: the backend's name, as error messages show it.
        keyspace: Lua run after the prelude; what it returns becomes
            ``entry_points``.
    """

    def __init__(self, backend: str, keyspace: str) -> None:
        self.runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
        quoted = "'" + backend.replace("\\", "\\\\").replace("'", "\\'") + "'"
        entry_points = self.runtime.execute(_PRELUDE % quoted + keyspace)
        self.entry_points: tuple[Any, ...] = (
            entry_points if isinstance(entry_points, tuple) else (entry_points,)
        )
        self._compiled: dict[str, Any] = {}

    def function(self, script: Script) -> Any:
        """``script`` as a Lua function of ``(KEYS, ARGV)``, compiled once.

        Raises:
            LuaError: the source does not compile.
        """
        function = self._compiled.get(script.sha)
        if function is None:
            function = self.runtime.eval(f"function(KEYS, ARGV)\n{script.source}\nend")
            self._compiled[script.sha] = function
        return function

    @staticmethod
    def integers(values: Iterable[Any]) -> list[int]:
        """A script's reply as integers.

        Redis turns Lua numbers into integers by truncation; so do we.
        """
        return list(map(int, values))
