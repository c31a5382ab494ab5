"""Embedded Lua (through lupa) for the backends that run scripts in-process.

``EmbeddedLua`` owns one runtime and gives each keyspace the pieces that do
not depend on where keys live: Redis's ``redis.call`` dispatch, ``TIME``,
the ``SET ... PX ms`` option, turning replies into integers as Redis does,
compiling scripts once per SHA1, and keeping ARGV tables.

Both chunks are files in ``lua/embedded/`` that the script registry reads:
``prelude.lua``, and a keyspace chunk that receives what the prelude returns
(``commands`` to fill in, ``clock``, ``px_ms`` and ``integers``) and
returns the entry points Python calls.
"""

import functools
import importlib
import os
import sys
import threading
from types import ModuleType
from typing import Any

from luathrottle.exceptions import BackendError
from luathrottle.scripts import Script, embedded_source

__all__ = ["EmbeddedLua", "KeptArgv", "LazyLua", "fastest_runtime"]

#: ARGV tables kept, by their arguments (see ``KeptArgv``).
_KEPT_ARGV = 256


@functools.cache
def fastest_runtime() -> ModuleType:
    """lupa's LuaJIT, else its Lua 5.1 when the wheel has no LuaJIT.

    LuaJIT runs the scripts about three times as fast as Lua 5.1, with the
    same results: the agreement tests run every algorithm on both. It is
    loaded bound to its own symbols (RTLD_DEEPBIND, where there is one):
    lupa's Lua 5.1 exports the same C functions when loaded with
    RTLD_GLOBAL, as fakeredis loads it, and LuaJIT's module would otherwise
    call those and run Lua 5.1.

    Loaded on the first embedded call, not at import, since it changes the
    process's dlopen flags for a moment.
    """
    # Windows has no dlopen flags, and macOS binds symbols per library.
    flags = sys.getdlopenflags() if hasattr(sys, "getdlopenflags") else None
    if flags is not None:
        sys.setdlopenflags(flags | getattr(os, "RTLD_DEEPBIND", 0))
    try:
        return importlib.import_module("lupa.luajit21")
    except ImportError:  # pragma: no cover - a lupa built without LuaJIT
        return importlib.import_module("lupa.lua51")
    finally:
        if flags is not None:
            sys.setdlopenflags(flags)


class EmbeddedLua:
    """One Lua runtime with a keyspace chunk loaded into it.

    lupa locks the runtime for the length of each call from Python, so a
    keyspace whose entry points do a whole script call at once needs no
    further lock to keep calls apart.

    Args:
        backend: the backend's name, as error messages show it.
        keyspace: the name of the keyspace chunk in ``lua/embedded/``; what
            it returns becomes ``entry_points``.
        runtime: the lupa module to run it on, ``fastest_runtime()`` by
            default; its ``LuaError``, ``error`` here, is what calls into it
            raise, and ``module`` is the module itself.
    """

    def __init__(
        self, backend: str, keyspace: str, runtime: ModuleType | None = None
    ) -> None:
        self.module = fastest_runtime() if runtime is None else runtime
        self.runtime = self.module.LuaRuntime(unpack_returned_tuples=True)
        self.error: type[Exception] = self.module.LuaError
        prelude = self.runtime.compile(embedded_source("prelude"))
        shared = prelude(backend)
        self._compile = shared[-1]
        entry_points = self.runtime.compile(embedded_source(keyspace))(*shared)
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
            function = self._compile(script.source, script.name)
            self._compiled[script.sha] = function
        return function


class KeptArgv:
    """ARGV tables kept by their arguments: a limiter's usual call, or a
    throttle's on the store's clock, sends the same arguments every time,
    and a kept table saves converting its strings into Lua at every call.
    Dropped all at once past 256 (arguments with a client's time in them
    are new at every call). A script gets the kept table as its ARGV, so it
    must not change it (no script in ``lua/`` does; tests check).
    """

    def __init__(self) -> None:
        #: The kept tables; hot paths look one up here themselves.
        self.tables: dict[tuple[str, ...], Any] = {}

    def table(self, runtime: Any, args: tuple[str, ...]) -> Any:
        """``args`` as a Lua table of ``runtime``, kept."""
        table = self.tables.get(args)
        if table is None:
            table = runtime.table_from(args)
            if len(self.tables) >= _KEPT_ARGV:
                self.tables.clear()
            self.tables[args] = table
        return table


class LazyLua:
    """An ``EmbeddedLua`` started on first use, so that building a backend
    reads no Lua and starts no runtime.

    Args:
        backend: as for ``EmbeddedLua``.
        keyspace: as for ``EmbeddedLua``.
        runtime: as for ``EmbeddedLua``.
    """

    def __init__(
        self, backend: str, keyspace: str, runtime: ModuleType | None = None
    ) -> None:
        self._arguments = (backend, keyspace, runtime)
        self._lua: EmbeddedLua | None = None
        self._lock = threading.Lock()

    def get(self) -> EmbeddedLua:
        """The runtime, started by the first caller."""
        lua = self._lua
        if lua is None:
            with self._lock:
                if self._lua is None:
                    self._lua = EmbeddedLua(*self._arguments)
                lua = self._lua
        return lua

    def compile(self, script: Script) -> None:
        """Compile ``script`` ahead of its first call.

        Raises:
            BackendError: it does not compile.
        """
        lua = self.get()
        try:
            lua.function(script)
        except lua.error as exc:
            raise BackendError(f"{script.name}: {exc}") from exc
