"""What the installed redis-py does where the releases of the supported range
(5.0.2 to the newest) differ, read from its sources: the tests of pools and
retries state luathrottle's promise on each release with these.

- A client's default retry policy: none before redis-py 6 (a command is
  retried only when the client is given ``retry_on_error`` or
  ``retry_on_timeout``); three retries with backoff on 6 and 7, ten on 8.
- An asyncio pool's default ``max_connections``: 2**31 up to redis-py 7.0,
  100 since 8. Neither waits when full: the asyncio pool raises at once,
  a plain ``ConnectionError("Too many connections")`` before redis-py 8 and
  its subclass ``MaxConnectionsError`` since.
- ``get_connection()`` on a pool takes a command name before redis-py 5.3,
  and warns of it as deprecated since.
- A cluster client reads from replicas with ``load_balancing_strategy``
  where redis-py has it (5.3 does, 5.1 does not), which deprecates the
  ``read_from_replicas=True`` of the releases before.
"""

from typing import Any

import redis
import redis.cluster
from packaging.version import Version

__all__ = [
    "ASYNC_DEFAULT_MAX_CONNECTIONS",
    "RETRIES_BY_DEFAULT",
    "VERSION",
    "get_connection",
    "replica_reads",
    "retries",
]

VERSION = Version(redis.__version__)

#: Whether a client built with redis-py's defaults retries a command.
RETRIES_BY_DEFAULT = VERSION.major >= 6

#: How many connections an asyncio client's default pool allows.
ASYNC_DEFAULT_MAX_CONNECTIONS = 100 if VERSION.major >= 8 else 2**31

#: What ``get_connection`` is called with: its command name became optional
#: in redis-py 5.3, which warns when one is given.
_COMMAND_NAME: tuple[str, ...] = () if VERSION.release >= (5, 3) else ("PING",)


def get_connection(pool: Any) -> Any:
    """A connection of ``pool``, as its user's own code takes one: connected,
    and counted as in use until released. Awaitable for an asyncio pool."""
    return pool.get_connection(*_COMMAND_NAME)


def retries(retry: Any) -> int:
    """How many times ``retry``, a redis-py ``Retry``, tries a command again:
    redis-py 5.0 has no ``get_retries()`` to ask it."""
    if hasattr(retry, "get_retries"):
        return int(retry.get_retries())
    return int(retry._retries)


def replica_reads() -> dict[str, Any]:
    """The settings of a cluster client that sends read commands to the
    replicas in turn."""
    strategy = getattr(redis.cluster, "LoadBalancingStrategy", None)
    if strategy is None:
        return {"read_from_replicas": True}
    return {"load_balancing_strategy": strategy.ROUND_ROBIN_REPLICAS}
