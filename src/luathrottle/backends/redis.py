"""Redis backends: EVALSHA over redis-py, sync and async.

Both twins send one EVALSHA per decision. When the server does not know the
script (a restart, SCRIPT FLUSH, a failover) they load it and retry once, so
the caller never sees NOSCRIPT. Every other Redis error becomes a
``BackendError`` with the cause chained.
"""

from collections.abc import Sequence

import redis
import redis.asyncio
from redis.exceptions import NoScriptError, RedisError

from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.backends.base import AsyncBackend, SyncBackend
from luathrottle.exceptions import BackendError
from luathrottle.scripts import Script

__all__ = ["AsyncRedis", "SyncRedis"]


class SyncRedis(SyncBackend):
    """Runs the scripts on a Redis-compatible server through ``redis.Redis``.

    Atomic across processes and machines: every decision is one script call.

    Args:
        client: a ``redis.Redis`` connected to the server.
    """

    def __init__(self, client: redis.Redis) -> None:
        if not isinstance(client, redis.Redis):
            raise TypeError(
                f"client must be a redis.Redis, got {type(client).__name__}"
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
    """Runs the scripts on a Redis-compatible server through
    ``redis.asyncio.Redis``.

    Args:
        client: a ``redis.asyncio.Redis`` connected to the server.
    """

    def __init__(self, client: redis.asyncio.Redis) -> None:
        if not isinstance(client, redis.asyncio.Redis):
            raise TypeError(
                f"client must be a redis.asyncio.Redis, got {type(client).__name__}"
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
