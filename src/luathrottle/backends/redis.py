"""Redis backends: FCALL or EVALSHA over redis-py, sync and async.

Both twins send one call per decision. On Redis 7+ (and Valkey 7.2+) that is
an FCALL of the function in the script's own library (``luathrottle.
scripts.Script.library``), or an FCALL_RO of its twin flagged ``no-writes``
for a peek; functions persist and replicate with the data, so a restart
with persistence, a failover or SCRIPT FLUSH costs nothing. Elsewhere, on a
Redis Cluster client unless ``functions=True``, or with ``functions=False``,
it is an EVALSHA.

A call that finds no function (FUNCTION FLUSH, a fresh server, a build
that has not called this script yet) loads that script's library with
FUNCTION LOAD, never REPLACE, so no build evicts another's (see
``luathrottle.scripts``), and runs again once, with EVAL; a call that finds
no script (NOSCRIPT) runs again once with EVAL too, which runs the source
and caches it in one step that no flush can split. Either way the first
call ran nothing, so nothing counts twice, and the caller never sees it.
A server without functions (an unknown command) or a user the ACL forbids
FCALL or FUNCTION LOAD (NOPERM) switches the backend object to EVALSHA for
good: the probe costs one failed call, once.

Every other Redis error becomes a ``BackendError`` with the cause chained:
a ``ScriptError`` when the server answered but the call's keys or script
failed (WRONGTYPE, a script error), which no circuit breaker counts, and a
plain ``BackendError`` when the server itself failed (connection, timeout,
OOM, READONLY, LOADING, MASTERDOWN, CLUSTERDOWN, BUSY, NOPERM...).

On Redis Cluster, EVALSHA goes to the primary that owns the keys' slot (all
keys of one call share a hash tag, so one slot) and never to a replica,
whatever the client's replica settings, because it may write; redis-py
follows MOVED and ASK redirections, and EVAL reloads a script on whichever
node lacks it.
"""

from collections.abc import Awaitable, Sequence
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import (
    NoScriptError,
    RedisError,
    ResponseError,
)

from luathrottle._breaker import CircuitBreaker, guard_for
from luathrottle.backends._redis_calls import (
    Via,
    command,
    function_trouble,
    load_failure,
    merge,
    missing_scripts,
    queue,
    reruns,
    translated,
)
from luathrottle.backends.base import AsyncBackend, ScriptCall, StoreTraits, SyncBackend
from luathrottle.exceptions import BackendError
from luathrottle.scripts import Script

__all__ = ["AsyncClient", "AsyncRedis", "SyncClient", "SyncRedis"]

#: Clients the sync backend accepts: one server (a Sentinel-managed primary
#: from ``Sentinel.master_for`` is one too) or a Redis Cluster.
SyncClient = redis.Redis | redis.cluster.RedisCluster
#: Clients the async backend accepts.
AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


def _timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
    if not 0 < timeout <= 60:
        raise ValueError(f"timeout must be above 0 and at most 60, got {timeout!r}")
    return float(timeout)


# redis-py annotates its sync and async clients' commands with one type.
_Reply = Awaitable[list[int]]


_ClientT = TypeVar("_ClientT", SyncClient, AsyncClient)


class _RedisBackend(Generic[_ClientT]):
    """What both twins share: the client, its checks, the guard, traits."""

    _plain: ClassVar[type[Any]]
    _cluster: ClassVar[type[Any]]

    def __init__(
        self,
        client: _ClientT,
        *,
        breaker: CircuitBreaker | Literal[False] | None = None,
        functions: bool | None = None,
    ) -> None:
        if not isinstance(client, self._plain | self._cluster):
            raise TypeError(
                f"client must be a {_qualified(self._plain)} or "
                f"{_qualified(self._cluster)}, got {_qualified(type(client))}"
            )
        if functions is not None and not isinstance(functions, bool):
            raise TypeError(f"functions must be a bool or None, got {functions!r}")
        self.client = client
        cluster = isinstance(client, self._cluster)
        self._guard = guard_for(breaker, default=not cluster)
        self._traits = StoreTraits(self, single_slot_calls=cluster)
        # Whether calls go out as FCALL; turned off for good when the server
        # or the ACL turns functions down. redis-py finds EVALSHA's slot by
        # itself but asks a node for FCALL's keys (COMMAND GETKEYS), a round
        # trip more per call, so clusters use EVALSHA unless told otherwise.
        self._functions = not cluster if functions is None else functions

    @property
    def uses_functions(self) -> bool:
        """Whether calls go out as FCALL/FCALL_RO rather than EVALSHA: True
        until the server shows it has no functions or forbids them."""
        return self._functions

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 0.5,
        breaker: CircuitBreaker | Literal[False] | None = None,
        functions: bool | None = None,
    ) -> Self:
        """A backend on a new client for ``url``, with bounded timeouts.

        Args:
            url: a ``redis://``, ``rediss://`` or ``unix://`` URL.
            timeout: seconds to connect, and to wait for each reply.
            breaker: as for the constructor.
            functions: as for the constructor.
        """
        client = cls._plain.from_url(
            url, socket_timeout=_timeout(timeout), socket_connect_timeout=timeout
        )
        return cls(client, breaker=breaker, functions=functions)

    def _via(self) -> Via:
        return "function" if self._functions else "sha"

    def _reruns_by_source(self, error: ResponseError) -> bool:
        """Whether a call that failed with ``error`` ran nothing for want of
        its script or function, so that EVAL may run it again; a missing
        function is to be loaded, and unusable functions turn them off."""
        if isinstance(error, NoScriptError):
            return True
        trouble = function_trouble(error) if self._functions else None
        if trouble == "unusable":
            self._functions = False
        return trouble is not None

    def _load_targets(self) -> list[dict[str, Any]]:
        """Where a library goes while functions are in use: the server, or
        each primary of a cluster in turn, so that one that has it already
        does not keep it from the others."""
        if not self._functions:
            return []
        if isinstance(self.client, self._cluster):
            return [{"target_nodes": node} for node in self.client.get_primaries()]
        return [{}]

    def _load_failed(self, error: RedisError) -> None:
        """Go on after a failed FUNCTION LOAD where calls can: the library
        is there already; the server is out of memory, and the call that
        needed it runs by EVAL, which a full server runs up to its first
        write as it does EVALSHA; the server or user cannot have functions,
        which turns them off. Else raise ``error``."""
        failure = load_failure(error)
        if failure is None:
            raise error
        if failure == "unusable":
            self._functions = False

    def traits(self) -> StoreTraits:
        """A store shared by every process, where each call is atomic."""
        return self._traits

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client!r})"


def _qualified(cls: type[Any]) -> str:
    return f"{cls.__module__.replace('.client', '')}.{cls.__name__}"


class SyncRedis(_RedisBackend[SyncClient], SyncBackend):
    """Runs the scripts on a Redis-compatible server through redis-py.

    Atomic across processes and machines: every decision is one script call.

    Args:
        client: a ``redis.Redis`` (a Sentinel-managed primary included) or a
            ``redis.cluster.RedisCluster``. Give it a ``socket_timeout`` and
            ``socket_connect_timeout`` (``from_url`` does), or a stalled
            server stalls requests for as long as the OS lets it.
        breaker: trips after repeated failures; a new ``CircuitBreaker()``
            by default, ``False`` for none. A cluster client gets none by
            default: one breaker for the whole cluster would stop the healthy
            primaries too while one fails over, and redis-py already moves
            to the new primary on its own.
        functions: True calls the scripts' function libraries with
            FCALL, falling back to EVALSHA by itself where the server has no
            functions or the ACL forbids them; False forces EVALSHA. None
            (default) is True for one server and False for a cluster, where
            redis-py would ask a node for each FCALL's keys (COMMAND
            GETKEYS), a round trip more than EVALSHA.
    """

    _plain = redis.Redis
    _cluster = redis.cluster.RedisCluster

    def _run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        # FCALL or EVALSHA, or once EVAL when the server lacked either. The
        # reply is typed by annotation: cast(list[int], ...) would build a
        # generic alias at every call.
        reply: list[int]
        try:
            try:
                reply = self.client.execute_command(
                    *command(script, keys, args, self._via())
                )
            except ResponseError as exc:
                if not self._reruns_by_source(exc):
                    raise
                self._reload_library(script)
                # EVAL runs the source and caches it in one step, which no
                # flush can split as it could a load and a call.
                reply = self.client.execute_command(
                    *command(script, keys, args, "source")
                )
        except RedisError as exc:
            raise translated(script.name, exc) from exc
        return reply

    def _reload_library(self, script: Script) -> None:
        """FUNCTION LOAD ``script``'s library, while functions are in use."""
        for where in self._load_targets():
            try:
                self.client.execute_command(
                    "FUNCTION LOAD", script.library.code, **where
                )
            except RedisError as exc:
                self._load_failed(exc)

    def _run_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        # One pipeline (one round trip per node), then EVAL again only the
        # calls that ran nothing for want of their script or function. A
        # lone call, the usual stage, skips the pipeline's bookkeeping.
        if len(calls) == 1:
            return [self._run_script(*calls[0])]
        try:
            replies = self._pipeline(calls, self._via())
            missing, troubles = reruns(calls, replies)
            if "unusable" in troubles:
                self._functions = False
            elif "missing" in troubles:
                for script in missing_scripts(calls, missing):
                    self._reload_library(script)
            rerun = self._pipeline([calls[i] for i in missing], "source")
        except RedisError as exc:
            raise translated("pipeline", exc) from exc
        return merge(calls, replies, missing, rerun)

    def _pipeline(self, calls: Sequence[ScriptCall], via: Via) -> list[Any]:
        if not calls:
            return []
        pipe = self.client.pipeline(transaction=False)
        queue(pipe, calls, via)
        return cast(list[Any], pipe.execute(raise_on_error=False))

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` with one DEL."""
        try:
            self.client.delete(*keys)
        except RedisError as exc:
            raise BackendError(f"DEL: {exc}") from exc

    def load_script(self, script: Script) -> None:
        """Load ``script``'s function library while functions are in use (a
        server out of memory gets it at a later call), else SCRIPT LOAD
        ``script``."""
        try:
            self._reload_library(script)
            if not self._functions:
                self.client.script_load(script.source)
        except RedisError as exc:
            raise BackendError(f"loading {script.name}: {exc}") from exc


class AsyncRedis(_RedisBackend[AsyncClient], AsyncBackend):
    """Runs the scripts on a Redis-compatible server through redis-py's
    asyncio client.

    Args:
        client: a ``redis.asyncio.Redis`` (a Sentinel-managed primary
            included) or a ``redis.asyncio.cluster.RedisCluster``, with
            timeouts, as for ``SyncRedis``.
        breaker: as for ``SyncRedis``.
        functions: as for ``SyncRedis``.
    """

    _plain = redis.asyncio.Redis
    _cluster = redis.asyncio.cluster.RedisCluster

    async def _arun_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        try:
            try:
                reply = await cast(
                    _Reply,
                    self.client.execute_command(
                        *command(script, keys, args, self._via())
                    ),
                )
            except ResponseError as exc:
                if not self._reruns_by_source(exc):
                    raise
                await self._reload_library(script)
                reply = await cast(
                    _Reply,
                    self.client.execute_command(*command(script, keys, args, "source")),
                )
        except RedisError as exc:
            raise translated(script.name, exc) from exc
        return reply

    async def _reload_library(self, script: Script) -> None:
        """FUNCTION LOAD ``script``'s library, while functions are in use."""
        for where in self._load_targets():
            try:
                await cast(
                    Awaitable[object],
                    self.client.execute_command(
                        "FUNCTION LOAD", script.library.code, **where
                    ),
                )
            except RedisError as exc:
                self._load_failed(exc)

    async def _arun_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        if len(calls) == 1:
            return [await self._arun_script(*calls[0])]
        try:
            replies = await self._pipeline(calls, self._via())
            missing, troubles = reruns(calls, replies)
            if "unusable" in troubles:
                self._functions = False
            elif "missing" in troubles:
                for script in missing_scripts(calls, missing):
                    await self._reload_library(script)
            rerun = await self._pipeline([calls[i] for i in missing], "source")
        except RedisError as exc:
            raise translated("pipeline", exc) from exc
        return merge(calls, replies, missing, rerun)

    async def _pipeline(self, calls: Sequence[ScriptCall], via: Via) -> list[Any]:
        if not calls:
            return []
        pipe = self.client.pipeline(transaction=False)
        queue(pipe, calls, via)
        return cast(list[Any], await pipe.execute(raise_on_error=False))

    async def adelete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` with one DEL."""
        try:
            await self.client.delete(*keys)
        except RedisError as exc:
            raise BackendError(f"DEL: {exc}") from exc

    async def aload_script(self, script: Script) -> None:
        """Load ``script``'s function library while functions are in use (a
        server out of memory gets it at a later call), else SCRIPT LOAD
        ``script``."""
        try:
            await self._reload_library(script)
            if not self._functions:
                await self.client.script_load(script.source)
        except RedisError as exc:
            raise BackendError(f"loading {script.name}: {exc}") from exc
