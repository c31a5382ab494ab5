"""The embedded runtimes the agreement tests run every algorithm on.

``MemoryBackend`` runs on LuaJIT; ``Lua51MemoryBackend`` runs the same
keyspace and scripts on Lua 5.1, the Lua that Redis embeds, so that any
difference LuaJIT makes (number formatting, integer handling) shows up as a
disagreement with the models, with Redis, or between the two.
"""

import lupa.lua51

from luathrottle.backends.memory import MemoryBackend


class Lua51MemoryBackend(MemoryBackend):
    """``MemoryBackend`` on Lua 5.1."""

    _runtime = lupa.lua51


#: Each embedded runtime, by name, as a MemoryBackend class.
EMBEDDED = {"luajit": MemoryBackend, "lua51": Lua51MemoryBackend}
