"""Redis backends: EVALSHA over redis-py, sync and async.

Both twins send one EVALSHA per decision. When the server does not know the
script (a restart, SCRIPT FLUSH, a failover) they retry once with EVAL, which
runs the source and leaves it loaded, so the caller never sees NOSCRIPT.
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
    ClusterDownError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)

from luathrottle._breaker import CircuitBreaker, guard_for
from luathrottle.backends.base import AsyncBackend, ScriptCall, StoreTraits, SyncBackend
from luathrottle.exceptions import BackendError, ScriptError
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


# Error replies that speak of the server, not of one call's keys. redis-py
# gives some their own classes and leaves the rest as ResponseError with the
# code in front of the message.
_SERVER_ERRORS = (
    ClusterDownError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
)
_SERVER_ERROR_CODES = frozenset(
    {"BUSY", "CLUSTERDOWN", "LOADING", "MASTERDOWN", "MISCONF", "NOREPLICAS"}
)


def _translated(what: str, error: Exception) -> BackendError:
    """``error`` as ours: a ``ScriptError`` when the server answered about
    this call alone, else a ``BackendError`` that a breaker counts."""
    message = f"{what}: {error}"
    if (
        isinstance(error, ResponseError)
        and not isinstance(error, _SERVER_ERRORS)
        and str(error).split(" ", 1)[0] not in _SERVER_ERROR_CODES
    ):
        return ScriptError(message)
    return BackendError(message)


# redis-py annotates its sync and async clients' commands with one type.
_Reply = Awaitable[list[int]]


def _queue(pipe: Any, calls: Sequence[ScriptCall], *, by_source: bool) -> None:
    for script, keys, args in calls:
        # execute_command: ClusterPipeline blocks its evalsha() helper, as it
        # cannot know that all keys of one call share a slot; ours do.
        if by_source:
            pipe.execute_command("EVAL", script.source, len(keys), *keys, *args)
        else:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)


def _unknown_scripts(
    calls: Sequence[ScriptCall], replies: Sequence[object]
) -> list[int]:
    """Indexes of the pipelined calls the server did not have the script for;
    any other error in the replies is raised, translated."""
    missing = []
    for index, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            missing.append(index)
        elif isinstance(reply, Exception):
            raise _translated(calls[index][0].name, reply) from reply
    return missing


def _merge(
    calls: Sequence[ScriptCall],
    replies: list[Any],
    missing: Sequence[int],
    rerun: Sequence[Any],
) -> list[list[int]]:
    """The first pipeline's replies, with the reruns in place of NOSCRIPT."""
    _unknown_scripts([calls[index] for index in missing], rerun)
    for index, reply in zip(missing, rerun, strict=True):
        replies[index] = reply
    return replies


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
    ) -> None:
        if not isinstance(client, self._plain | self._cluster):
            raise TypeError(
                f"client must be a {_qualified(self._plain)} or "
                f"{_qualified(self._cluster)}, got {_qualified(type(client))}"
            )
        self.client = client
        cluster = isinstance(client, self._cluster)
        self._guard = guard_for(breaker, default=not cluster)
        self._traits = StoreTraits(self, single_slot_calls=cluster)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 0.5,
        breaker: CircuitBreaker | Literal[False] | None = None,
    ) -> Self:
        """A backend on a new client for ``url``, with bounded timeouts.

        Args:
            url: a ``redis://``, ``rediss://`` or ``unix://`` URL.
            timeout: seconds to connect, and to wait for each reply.
            breaker: as for the constructor.
        """
        client = cls._plain.from_url(
            url, socket_timeout=_timeout(timeout), socket_connect_timeout=timeout
        )
        return cls(client, breaker=breaker)

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
    """

    _plain = redis.Redis
    _cluster = redis.cluster.RedisCluster

    def _run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        # EVALSHA, or once EVAL on NOSCRIPT.
        try:
            try:
                reply = self.client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                # EVAL runs the source and caches it in one step, which no
                # SCRIPT FLUSH can split as it could SCRIPT LOAD and EVALSHA.
                reply = self.client.eval(script.source, len(keys), *keys, *args)
        except RedisError as exc:
            raise _translated(script.name, exc) from exc
        return cast(list[int], reply)

    def _run_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        # One pipeline (one round trip per node), then EVAL again only the
        # calls that met NOSCRIPT. A lone call, the usual stage, skips the
        # pipeline's bookkeeping.
        if len(calls) == 1:
            return [self._run_script(*calls[0])]
        try:
            replies = self._pipeline(calls)
            missing = _unknown_scripts(calls, replies)
            rerun = self._pipeline([calls[i] for i in missing], by_source=True)
        except RedisError as exc:
            raise _translated("pipeline", exc) from exc
        return _merge(calls, replies, missing, rerun)

    def _pipeline(
        self, calls: Sequence[ScriptCall], *, by_source: bool = False
    ) -> list[Any]:
        if not calls:
            return []
        pipe = self.client.pipeline(transaction=False)
        _queue(pipe, calls, by_source=by_source)
        return cast(list[Any], pipe.execute(raise_on_error=False))

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` with one DEL."""
        try:
            self.client.delete(*keys)
        except RedisError as exc:
            raise BackendError(f"DEL: {exc}") from exc

    def load_script(self, script: Script) -> None:
        """SCRIPT LOAD ``script``."""
        try:
            self.client.script_load(script.source)
        except RedisError as exc:
            raise BackendError(f"SCRIPT LOAD: {exc}") from exc


class AsyncRedis(_RedisBackend[AsyncClient], AsyncBackend):
    """Runs the scripts on a Redis-compatible server through redis-py's
    asyncio client.

    Args:
        client: a ``redis.asyncio.Redis`` (a Sentinel-managed primary
            included) or a ``redis.asyncio.cluster.RedisCluster``, with
            timeouts, as for ``SyncRedis``.
        breaker: as for ``SyncRedis``.
    """

    _plain = redis.asyncio.Redis
    _cluster = redis.asyncio.cluster.RedisCluster

    async def _arun_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        try:
            try:
                reply = await cast(
                    _Reply, self.client.evalsha(script.sha, len(keys), *keys, *args)
                )
            except NoScriptError:
                reply = await cast(
                    _Reply, self.client.eval(script.source, len(keys), *keys, *args)
                )
        except RedisError as exc:
            raise _translated(script.name, exc) from exc
        return reply

    async def _arun_scripts(self, calls: Sequence[ScriptCall]) -> list[list[int]]:
        if len(calls) == 1:
            return [await self._arun_script(*calls[0])]
        try:
            replies = await self._pipeline(calls)
            missing = _unknown_scripts(calls, replies)
            rerun = await self._pipeline([calls[i] for i in missing], by_source=True)
        except RedisError as exc:
            raise _translated("pipeline", exc) from exc
        return _merge(calls, replies, missing, rerun)

    async def _pipeline(
        self, calls: Sequence[ScriptCall], *, by_source: bool = False
    ) -> list[Any]:
        if not calls:
            return []
        pipe = self.client.pipeline(transaction=False)
        _queue(pipe, calls, by_source=by_source)
        return cast(list[Any], await pipe.execute(raise_on_error=False))

    async def adelete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` with one DEL."""
        try:
            await self.client.delete(*keys)
        except RedisError as exc:
            raise BackendError(f"DEL: {exc}") from exc

    async def aload_script(self, script: Script) -> None:
        """SCRIPT LOAD ``script``."""
        try:
            await self.client.script_load(script.source)
        except RedisError as exc:
            raise BackendError(f"SCRIPT LOAD: {exc}") from exc
