"""Redis backends: FCALL or EVALSHA over redis-py or valkey-py, sync and
async.

Both twins send one call per decision. On Redis 7+ (and Valkey 7.2+) that is
an FCALL of the function in the script's own library (``luathrottle.
scripts.Script.library``), or an FCALL_RO of its twin flagged ``no-writes``
for a peek; functions persist and replicate with the data, so a restart
with persistence, a failover or SCRIPT FLUSH costs nothing. Elsewhere, on a
Redis Cluster client unless ``functions=True``, or with ``functions=False``,
it is an EVALSHA. Calls that arrive while one is in flight wait for it, and
then go out together as one pipeline, each still a call of its own
(``backends._coalescing``; on one server unless ``coalesce=False``).

A call that finds no function (FUNCTION FLUSH, a fresh server, a build
that has not called this script yet) loads that script's library with
FUNCTION LOAD, never REPLACE, so no build evicts another's (see
``luathrottle.scripts``), and runs again once, with EVAL; a call that finds
no script (NOSCRIPT) runs again once with EVAL too, which runs the source
and caches it in one step that no flush can split. Either way the first
call ran nothing, so nothing counts twice, and the caller never sees it.
A server without functions (an unknown command) or an ACL forbidding FCALL
or FUNCTION LOAD (NOPERM) switches the backend to EVALSHA for good, at the
cost of one failed call.

A call is sent once, never retried, whatever retry policy the client
carries: a retried script call that reached the server would count a hit
twice. On one server it goes on connections of the client's settings
(``backends._connections``), waiting for a free one through a spike. On a
cluster it names the primary owning the keys' slot (one hash tag per call),
never a replica; redis-py sends it there, following MOVED and ASK.

Every other Redis error becomes a ``BackendError`` with the cause chained:
a ``ScriptError`` when the server answered but the call's keys or script
failed (WRONGTYPE, a script error), which no circuit breaker counts, and a
plain ``BackendError`` when the server itself failed (connection, timeout,
OOM, READONLY, LOADING, MASTERDOWN, CLUSTERDOWN, BUSY, NOPERM...).
"""

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, cast

from luathrottle.backends import _clients
from luathrottle.backends._clients import (
    ERRORS,
    RESPONSE_ERRORS,
    AsyncClient,
    SyncClient,
)
from luathrottle.backends._coalescing import (
    AsyncCoalescing,
    Outcome,
    SyncCoalescing,
    raised,
)
from luathrottle.backends._connections import AsyncConnections, SyncConnections
from luathrottle.backends._redis_base import RedisBase
from luathrottle.backends._redis_calls import (
    Via,
    command,
    merge,
    missing_scripts,
    reruns,
    translated,
)
from luathrottle.backends.base import ScriptCall
from luathrottle.exceptions import BackendError, ScriptError
from luathrottle.scripts import Script

__all__ = ["AsyncClient", "AsyncRedis", "SyncClient", "SyncRedis"]


# redis-py annotates its sync and async clients' commands with one type.
_Reply = Awaitable[list[int]]


class SyncRedis(RedisBase[SyncClient], SyncCoalescing):
    """Runs the scripts on a Redis-compatible server through redis-py or
    valkey-py.

    Atomic across processes and machines: every decision is one script call.

    Args:
        client: a ``redis.Redis`` (a Sentinel-managed primary included) or
            ``redis.cluster.RedisCluster``, or valkey-py's ``valkey.Valkey``
            or ``valkey.cluster.ValkeyCluster``. Give it a ``socket_timeout`` and
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
        coalesce: True lets calls from threads that arrive while one is in
            flight wait for it, and go out together as one pipeline; False
            sends each call on its own connection at once. None (default)
            is True for one server and False for a cluster, where a batch
            would be one call per node all the same. See
            ``docs/coalescing.md``.
    """

    _plains = _clients.SYNC_PLAINS
    _clusters = _clients.SYNC_CLUSTERS
    _names = _clients.SYNC_NAMES
    _connections_type = SyncConnections
    _connections: SyncConnections | None

    def _node(self, key: str) -> Any:
        """The cluster node that owns ``key``'s slot; None on one server."""
        if self._connections is None:
            return self.client.get_node_from_key(key)
        return None

    def _send(self, call: tuple[str, ...], node: Any) -> Any:
        """Send one command to ``node`` (None: the server), once; an error
        reply is raised."""
        if self._connections is not None:
            return self._connections.send([call], True)[0]
        return self.client.execute_command(*call, target_nodes=node)

    def _run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        # FCALL or EVALSHA, or once EVAL when the server lacked either. The
        # reply is typed by annotation: cast(list[int], ...) would build a
        # generic alias at every call.
        reply: list[int]
        try:
            node = self._node(keys[0])
            try:
                reply = self._send(command(script, keys, args, self._via()), node)
            except RESPONSE_ERRORS as exc:
                if not self._reruns_by_source(exc):
                    raise
                self._reload_library(script)
                # EVAL runs the source and caches it in one step, which no
                # flush can split as it could a load and a call.
                reply = self._send(command(script, keys, args, "source"), node)
        except ERRORS as exc:
            raise translated(script.name, exc) from exc
        return reply

    def _reload_library(self, script: Script) -> None:
        """FUNCTION LOAD ``script``'s library, while functions are in use."""
        for node in self._load_targets():
            try:
                self._send(("FUNCTION", "LOAD", script.library.code), node)
            except ERRORS as exc:
                self._load_failed(exc)

    def _run_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        # A lone call, the usual stage, skips the pipeline's bookkeeping.
        if len(calls) == 1:
            return [self._run_script(*calls[0])]
        return raised(self._run_each(calls))

    def _run_each(self, calls: Sequence[ScriptCall]) -> list[Outcome]:
        # One pipeline (one round trip per node), then EVAL again only the
        # calls that ran nothing for want of their script or function.
        if len(calls) == 1:
            try:
                return [self._run_script(*calls[0])]
            except ScriptError as error:
                return [error]
        try:
            replies = self._pipeline(calls, self._via())
            missing, troubles = reruns(calls, replies)
            if "unusable" in troubles:
                self._functions = False
            elif "missing" in troubles:
                for script in missing_scripts(calls, missing):
                    self._reload_library(script)
            rerun = self._pipeline([calls[i] for i in missing], "source")
        except ERRORS as exc:
            raise translated("pipeline", exc) from exc
        return merge(calls, replies, missing, rerun)

    def _pipeline(self, calls: Sequence[ScriptCall], via: Via) -> list[Any]:
        # Error replies come back in place. A cluster's pipeline retries
        # what timed out, so there each call goes to its node on its own.
        if not calls:
            return []
        commands = [command(script, keys, args, via) for script, keys, args in calls]
        if self._connections is not None:
            return self._connections.send(commands, False)
        replies: list[Any] = []
        for (_, keys, _), call in zip(calls, commands, strict=True):
            try:
                replies.append(self._send(call, self._node(keys[0])))
            except RESPONSE_ERRORS as error:
                replies.append(error)
        return replies

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` with one DEL."""
        try:
            self.client.delete(*keys)
        except ERRORS as exc:
            raise BackendError(f"DEL: {exc}") from exc

    def load_script(self, script: Script) -> None:
        """Load ``script``'s function library while functions are in use (a
        server out of memory gets it at a later call), else SCRIPT LOAD
        ``script``."""
        try:
            self._reload_library(script)
            if not self._functions:
                self.client.script_load(script.source)
        except ERRORS as exc:
            raise BackendError(f"loading {script.name}: {exc}") from exc


class AsyncRedis(RedisBase[AsyncClient], AsyncCoalescing):
    """Runs the scripts on a Redis-compatible server through redis-py's
    or valkey-py's asyncio client.

    Args:
        client: a ``redis.asyncio.Redis`` (a Sentinel-managed primary
            included) or ``redis.asyncio.cluster.RedisCluster``, or their
            valkey-py twins, with timeouts, as for ``SyncRedis``.
        breaker: as for ``SyncRedis``.
        functions: as for ``SyncRedis``.
        coalesce: as for ``SyncRedis``, for the tasks of one event loop.
    """

    _plains = _clients.ASYNC_PLAINS
    _clusters = _clients.ASYNC_CLUSTERS
    _names = _clients.ASYNC_NAMES
    _connections_type = AsyncConnections
    _connections: AsyncConnections | None

    async def _node(self, key: str) -> Any:
        """The cluster node that owns ``key``'s slot; None on one server."""
        if self._connections is None:
            # Connects on first use, and reads the slots again when an
            # earlier error asked for it, as execute_command would.
            await self.client.initialize()
            return self.client.get_node_from_key(key)
        return None

    async def _send(self, call: tuple[str, ...], node: Any) -> Any:
        """Send one command to ``node`` (None: the server), once; an error
        reply is raised."""
        if self._connections is not None:
            return (await self._connections.send([call], True))[0]
        return await cast(_Reply, self.client.execute_command(*call, target_nodes=node))

    async def _arun_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        reply: list[int]
        try:
            node = await self._node(keys[0])
            try:
                reply = await self._send(command(script, keys, args, self._via()), node)
            except RESPONSE_ERRORS as exc:
                if not self._reruns_by_source(exc):
                    raise
                await self._reload_library(script)
                reply = await self._send(command(script, keys, args, "source"), node)
        except ERRORS as exc:
            raise translated(script.name, exc) from exc
        return reply

    async def _reload_library(self, script: Script) -> None:
        """FUNCTION LOAD ``script``'s library, while functions are in use."""
        for node in self._load_targets():
            try:
                await self._send(("FUNCTION", "LOAD", script.library.code), node)
            except ERRORS as exc:
                self._load_failed(exc)

    async def _arun_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        if len(calls) == 1:
            return [await self._arun_script(*calls[0])]
        return raised(await self._arun_each(calls))

    async def _arun_each(self, calls: Sequence[ScriptCall]) -> list[Outcome]:
        if len(calls) == 1:
            try:
                return [await self._arun_script(*calls[0])]
            except ScriptError as error:
                return [error]
        try:
            replies = await self._pipeline(calls, self._via())
            missing, troubles = reruns(calls, replies)
            if "unusable" in troubles:
                self._functions = False
            elif "missing" in troubles:
                for script in missing_scripts(calls, missing):
                    await self._reload_library(script)
            rerun = await self._pipeline([calls[i] for i in missing], "source")
        except ERRORS as exc:
            raise translated("pipeline", exc) from exc
        return merge(calls, replies, missing, rerun)

    async def _pipeline(self, calls: Sequence[ScriptCall], via: Via) -> list[Any]:
        if not calls:
            return []
        commands = [command(script, keys, args, via) for script, keys, args in calls]
        if self._connections is not None:
            return await self._connections.send(commands, False)
        # A cluster's node calls go out together, each on its own.
        return await asyncio.gather(
            *(
                self._send_quietly(keys[0], call)
                for (_, keys, _), call in zip(calls, commands, strict=True)
            )
        )

    async def _send_quietly(self, key: str, call: tuple[str, ...]) -> Any:
        try:
            return await self._send(call, await self._node(key))
        except RESPONSE_ERRORS as error:
            return error

    async def adelete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` with one DEL."""
        try:
            await self.client.delete(*keys)
        except ERRORS as exc:
            raise BackendError(f"DEL: {exc}") from exc

    async def aload_script(self, script: Script) -> None:
        """Load ``script``'s function library while functions are in use (a
        server out of memory gets it at a later call), else SCRIPT LOAD
        ``script``."""
        try:
            await self._reload_library(script)
            if not self._functions:
                await self.client.script_load(script.source)
        except ERRORS as exc:
            raise BackendError(f"loading {script.name}: {exc}") from exc
