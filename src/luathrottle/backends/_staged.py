"""The staged store: scripts run in-process over a Django cache that cannot
run them, reading their keys with ``get_many`` and writing back what they
changed.

Each call reads a snapshot of its keys, runs the script over it in embedded
Lua (``lua/embedded/staging_keyspace.lua``), then writes what it set with
``set_many`` (timeouts rounded up to whole seconds) and deletes what it
deleted with ``delete_many``. A hashed script's hash is cached as bytes,
``expiry NUL field NUL value NUL ...``, its expiry in ms since 1970 or
empty: the cache's own timeout cannot be read back, and a script extends a
hash's life only when it needs to. The keyspace reads and writes that form
itself, so a hash crosses into Lua and back as one value. This
read-modify-write is atomic only within one process: every backend on one
alias shares one lock per process (sync) or per event loop (async), but the
sync and async twins do not wait for each other, and other processes are
not held off at all.
"""

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

from django.core.cache.backends.base import BaseCache

from luathrottle.backends._lua import KeptArgv, LazyLua
from luathrottle.backends._per_loop import PerLoop
from luathrottle.backends.base import ScriptCall
from luathrottle.exceptions import BackendError, ScriptError
from luathrottle.scripts import Script

__all__ = ["Staging"]

_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_LOOP_LOCKS: PerLoop[dict[str, asyncio.Lock]] = PerLoop()


#: What one in-process script call answered, and what to write back: the
#: keys it set, by cache timeout, and the keys it deleted. A plain tuple:
#: a NamedTuple's constructor is a Python function, and this is every hit.
_Staged = tuple[list[int], dict[int | None, dict[str, object]], list[str]]


#: Ints this wide or wider are no state of ours.
_MAX_INT = 2**64


def _as_state(runtime: Any, value: object) -> object:
    """A cached value as the keyspace reads it (see
    ``staging_keyspace.lua``), as a Redis-backed cache would hold it: bytes
    as a hash (the keyspace decides whether they are one), a str as a
    string, an int as its digits (the script decides whether it can read
    them), and anything else as a key of another type.
    """
    if type(value) is bytes:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # Python refuses to write ints of thousands of digits; "" is a state
        # no script reads.
        value = str(value) if -_MAX_INT < value < _MAX_INT else ""
    if isinstance(value, str):
        return runtime.table_from({"string": value})
    return runtime.table_from({"foreign": type(value).__name__})


def _read_sets(
    out: Sequence[Any], at: int, count: int
) -> tuple[dict[int | None, dict[str, object]], int]:
    """The ``count`` keys a script set, from ``out[at]`` on (see
    ``run_staged`` in ``staging_keyspace.lua``), grouped by cache timeout,
    each as the cache keeps it: a string as it is, a hash as its bytes; and
    where they end in ``out``."""
    by_timeout: dict[int | None, dict[str, object]] = {}
    for _ in range(count):
        key, timeout, hashed, value = out[at : at + 4]
        at += 4
        by_timeout.setdefault(timeout, {})[key] = value.encode() if hashed else value
    return by_timeout, at


class Staging:
    """Runs scripts over snapshots of one cache alias's keys.

    The Lua runtime starts on first use, so Redis-backed caches never pay
    for it.

    Args:
        cache_name: the alias, for locks and messages.
    """

    def __init__(self, cache_name: str) -> None:
        self.cache_name = cache_name
        self._lua = LazyLua("django cache", "staging_keyspace")
        self._argv = KeptArgv()
        self._process_lock = _PROCESS_LOCKS.setdefault(cache_name, threading.Lock())

    def compile(self, script: Script) -> None:
        """Compile ``script`` ahead of its first call.

        Raises:
            BackendError: it does not compile.
        """
        self._lua.compile(script)

    def _stage(self, call: ScriptCall, snapshot: Mapping[str, Any]) -> _Staged:
        script, keys, args = call
        lua = self._lua.get()
        runtime = lua.runtime
        given: list[object] = []
        for key, value in snapshot.items():
            given += (key, _as_state(runtime, value))
        argv = self._argv.table(runtime, args if type(args) is tuple else tuple(args))
        try:
            # One crossing each way: the keys and the snapshot go in as
            # arguments, and the reply and the writes come back as one flat
            # tuple.
            out = lua.entry_points[0](
                lua.function(script),
                time.time_ns() // 1000,
                argv,
                len(keys),
                *keys,
                *given,
            )
        except lua.error as exc:
            raise ScriptError(f"{script.name}: {exc}") from exc
        count = out[0]
        sets, end = _read_sets(out, count + 2, out[count + 1])
        return list(out[1 : count + 1]), sets, list(out[end:])

    def _failed(self, operation: str, exc: Exception) -> BackendError:
        return BackendError(f"cache {self.cache_name!r} {operation}: {exc}")

    @contextlib.contextmanager
    def errors(self, operation: str) -> Iterator[None]:
        """Translate whatever the cache raised into ``BackendError``."""
        try:
            yield
        except BackendError:
            raise
        except Exception as exc:
            raise self._failed(operation, exc) from exc

    def _stored(self, failed: object) -> None:
        # set_many answers the keys it failed to store.
        if failed:
            keys = list(cast(Iterable[str], failed))
            raise BackendError(f"cache {self.cache_name!r} did not store keys {keys}")

    def run(self, cache: BaseCache, calls: Sequence[ScriptCall]) -> list[list[int]]:
        """Run ``calls`` in turn, under this process's lock on the alias.

        Raises:
            BackendError: the cache or a script failed; the cause is chained.
        """
        with self._process_lock:
            return [self._run_one(cache, call) for call in calls]

    def run_one(self, cache: BaseCache, call: ScriptCall) -> list[int]:
        """``run`` of one call.

        Raises:
            BackendError: the cache or the script failed; the cause is
                chained.
        """
        with self._process_lock:
            return self._run_one(cache, call)

    def _run_one(self, cache: BaseCache, call: ScriptCall) -> list[int]:
        # try blocks rather than errors(): they cost nothing when nothing
        # fails, and this runs for every request.
        operation = "get_many"
        try:
            reply, sets, deletes = self._stage(
                call, cache.get_many(dict.fromkeys(call[1]))
            )
            operation = "write back"
            for timeout, items in sets.items():
                self._stored(cache.set_many(items, timeout))
            if deletes:
                cache.delete_many(deletes)
        except BackendError:
            raise
        except Exception as exc:
            raise self._failed(operation, exc) from exc
        return reply

    async def arun(
        self, cache: BaseCache, calls: Sequence[ScriptCall]
    ) -> list[list[int]]:
        """Run ``calls`` in turn, under this event loop's lock on the alias."""
        locks = _LOOP_LOCKS.get(dict)
        async with locks.setdefault(self.cache_name, asyncio.Lock()):
            return [await self._arun_one(cache, call) for call in calls]

    async def arun_one(self, cache: BaseCache, call: ScriptCall) -> list[int]:
        """``arun`` of one call."""
        locks = _LOOP_LOCKS.get(dict)
        async with locks.setdefault(self.cache_name, asyncio.Lock()):
            return await self._arun_one(cache, call)

    async def _arun_one(self, cache: BaseCache, call: ScriptCall) -> list[int]:
        operation = "aget_many"
        try:
            reply, sets, deletes = self._stage(
                call, await cache.aget_many(dict.fromkeys(call[1]))
            )
            operation = "write back"
            for timeout, items in sets.items():
                self._stored(await cache.aset_many(items, timeout))
            if deletes:
                await cache.adelete_many(deletes)
        except BackendError:
            raise
        except Exception as exc:
            raise self._failed(operation, exc) from exc
        return reply
