"""Redis backends: EVALSHA over redis-py, sync and async.

Both twins send one EVALSHA per decision. When the server does not know the
script (a restart, SCRIPT FLUSH, a failover) they load it and retry once, so
the caller never sees NOSCRIPT. Every other Redis error becomes a
``BackendError`` with the cause chained.

On Redis Cluster, EVALSHA goes to the primary that owns the keys' slot (all
keys of one call share a hash tag, so one slot) and never to a replica,
whatever the client's replica settings, because it may write; redis-py
follows MOVED and ASK redirections, and SCRIPT LOAD reaches every primary.
"""

from collections.abc import Sequence

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import NoScriptError, RedisError

from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.backends.base import AsyncBackend, SyncBackend
from luathrottle.exceptions import BackendError
from luathrottle.scripts import Script

__all__ = ["AsyncClient", "AsyncRedis", "SyncClient", "SyncRedis"]

#: Clients the sync backend accepts: one server (a Sentinel-managed primary
#: from ``Sentinel.master_for`` is one too) or a Redis Cluster.
SyncClient = redis.Redis | redis.cluster.RedisCluster
#: Clients the async backend accepts.
AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


class SyncRedis(SyncBackend):
    """Runs the scripts on a Redis-compatible server through redis-py.

    Atomic across processes and machines: every decision is one script call.

    Args:
        client: a ``redis.Redis`` (a Sentinel-managed primary included) or a
            ``redis.cluster.RedisCluster``.
    """

    def __init__(self, client: SyncClient) -> None:
        if not isinstance(client, redis.Redis | redis.cluster.RedisCluster):
            raise TypeError(
                "client must be a redis.Redis or redis.cluster.RedisCluster, "
                f"got {type(client).__name__}"
            )
        self.client = client

    def run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        """Run ``script`` with EVALSHA, loading it once on NOSCRIPT."""
        try:
            try:
                return self.client.evalsha(script.sha, len(keys), *keys, *args)  # type: ignore[no-any-return]
            except NoScriptError:
                self.client.script_load(script.source)
                return self.client.evalsha(script.sha, len(keys), *keys, *args)  # type: ignore[no-any-return]
        except RedisError as exc:
            raise BackendError(f"{script.name}: {exc}") from exc

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` with one DEL."""
        try:
            self.client.delete(*keys)
        except RedisError as exc:
            raise BackendError(f"DEL: {exc}") from exc

    def initialize_algorithm(self, algorithm: BaseThrottleAlgorithm) -> None:
        """SCRIPT LOAD the algorithm's script."""
        try:
            self.client.script_load(algorithm.script.source)
        except RedisError as exc:
            raise BackendError(f"SCRIPT LOAD: {exc}") from exc

    def __repr__(self) -> str:
        return f"SyncRedis({self.client!r})"


class AsyncRedis(AsyncBackend):
    """Runs the scripts on a Redis-compatible server through redis-py's
    asyncio client.

    Args:
        client: a ``redis.asyncio.Redis`` (a Sentinel-managed primary
            included) or a ``redis.asyncio.cluster.RedisCluster``.
    """

    def __init__(self, client: AsyncClient) -> None:
        if not isinstance(
            client, redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
        ):
            raise TypeError(
                "client must be a redis.asyncio.Redis or "
                f"redis.asyncio.cluster.RedisCluster, got {type(client).__name__}"
            )
        self.client = client

    async def arun_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str]
    ) -> list[int]:
        """Run ``script`` with EVALSHA, loading it once on NOSCRIPT."""
        try:
            try:
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)  # type: ignore[no-any-return]
            except NoScriptError:
                await self.client.script_load(script.source)
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)  # type: ignore[no-any-return]
        except RedisError as exc:
            raise BackendError(f"{script.name}: {exc}") from exc

    async def adelete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` with one DEL."""
        try:
            await self.client.delete(*keys)
        except RedisError as exc:
            raise BackendError(f"DEL: {exc}") from exc

    async def ainitialize_algorithm(self, algorithm: BaseThrottleAlgorithm) -> None:
        """SCRIPT LOAD the algorithm's script."""
        try:
            await self.client.script_load(algorithm.script.source)
        except RedisError as exc:
            raise BackendError(f"SCRIPT LOAD: {exc}") from exc

    def __repr__(self) -> str:
        return f"AsyncRedis({self.client!r})"
