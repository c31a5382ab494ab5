"""The client libraries the Redis backends speak through: redis-py always,
and valkey-py, its fork, where it is installed. Which client classes the
backends accept, and which exception classes of either library mean what.

valkey-py has redis-py's API under its own module and exception classes
(``valkey.exceptions.ResponseError`` is no ``redis.exceptions.
ResponseError``), so every check below names both families. valkey-py is
optional: without it, each tuple holds redis-py's classes alone, and no
valkey client can exist to raise the others.
"""

import functools
import operator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.backoff
import redis.cluster
import redis.exceptions as _redis
import redis.retry

__all__ = [
    "ASYNC_CLUSTERS",
    "ASYNC_NAMES",
    "ASYNC_PLAINS",
    "CONNECTION_ERRORS",
    "ERRORS",
    "NO_PERMISSION",
    "NO_SCRIPT",
    "OUT_OF_MEMORY",
    "RESPONSE_ERRORS",
    "SERVER_ERRORS",
    "SYNC_CLUSTERS",
    "SYNC_NAMES",
    "SYNC_PLAINS",
    "AsyncClient",
    "SyncClient",
    "async_no_retry",
    "plain_for",
    "pool_full",
    "sync_no_retry",
    "wrong_client",
]

# Imported once, here, where installed: the tuples below are then fixed,
# and each check is one isinstance. A client of valkey-py means valkey-py
# is installed, so the guard loses nothing.
_valkey: ModuleType | None
try:
    import valkey
    import valkey.asyncio
    import valkey.asyncio.cluster
    import valkey.asyncio.retry
    import valkey.backoff
    import valkey.cluster
    import valkey.exceptions
    import valkey.retry
except ImportError:
    _valkey = None
else:
    _valkey = valkey


def _classes(redis_class: type[Any], valkey_name: str) -> tuple[type[Any], ...]:
    """``redis_class``, and valkey-py's class at ``valkey_name`` (a dotted
    path under ``valkey``) when valkey-py is installed."""
    if _valkey is None:
        return (redis_class,)
    found: Any = _valkey
    for name in valkey_name.split("."):
        found = getattr(found, name)
    return (redis_class, found)


# Clients: one server (Sentinel's primary included), or a cluster.
SYNC_PLAINS = _classes(redis.Redis, "Valkey")
SYNC_CLUSTERS = _classes(redis.cluster.RedisCluster, "cluster.ValkeyCluster")
ASYNC_PLAINS = _classes(redis.asyncio.Redis, "asyncio.Valkey")
ASYNC_CLUSTERS = _classes(
    redis.asyncio.cluster.RedisCluster, "asyncio.cluster.ValkeyCluster"
)

# The aliases name valkey-py's classes for the type checker (the project's
# dev extra installs it); at run time, the classes there are.
if TYPE_CHECKING:
    SyncClient = (
        redis.Redis
        | redis.cluster.RedisCluster
        | valkey.Valkey
        | valkey.cluster.ValkeyCluster
    )
    AsyncClient = (
        redis.asyncio.Redis
        | redis.asyncio.cluster.RedisCluster
        | valkey.asyncio.Valkey
        | valkey.asyncio.cluster.ValkeyCluster
    )
else:
    SyncClient = functools.reduce(operator.or_, SYNC_PLAINS + SYNC_CLUSTERS)
    AsyncClient = functools.reduce(operator.or_, ASYNC_PLAINS + ASYNC_CLUSTERS)

# Every error either library raises: a cluster client's errors of routing
# (a slot no node covers) are no RedisError (nor ValkeyError).
ERRORS = _classes(_redis.RedisError, "exceptions.ValkeyError") + _classes(
    _redis.RedisClusterException, "exceptions.ValkeyClusterException"
)
# An error reply of the server, raised for a lone call and returned in
# place in a pipeline.
RESPONSE_ERRORS = _classes(_redis.ResponseError, "exceptions.ResponseError")
NO_SCRIPT = _classes(_redis.NoScriptError, "exceptions.NoScriptError")
NO_PERMISSION = _classes(_redis.NoPermissionError, "exceptions.NoPermissionError")
OUT_OF_MEMORY = _classes(_redis.OutOfMemoryError, "exceptions.OutOfMemoryError")
CONNECTION_ERRORS = (
    _classes(_redis.ConnectionError, "exceptions.ConnectionError")
    + _classes(_redis.TimeoutError, "exceptions.TimeoutError")
    + (OSError,)
)
# Error replies that speak of the server, not of one call's keys, which
# the libraries give classes of their own.
SERVER_ERRORS = (
    _classes(_redis.ClusterDownError, "exceptions.ClusterDownError")
    + NO_PERMISSION
    + OUT_OF_MEMORY
    + _classes(_redis.ReadOnlyError, "exceptions.ReadOnlyError")
    + _classes(_redis.TryAgainError, "exceptions.TryAgainError")
)
# A pool with no connection free. redis-py's asyncio pool before 8, its
# sync pool before 7, and valkey-py 6's own pools (not its asyncio
# cluster's) say so with a plain ConnectionError of this text instead: on
# redis-py 5 a full pool is told from a failing store by this text alone.
_POOL_FULL = _classes(_redis.MaxConnectionsError, "exceptions.MaxConnectionsError")
_POOL_FULL_TEXT = "Too many connections"


def pool_full(error: BaseException) -> bool:
    """Whether ``error`` says the client's pool had no connection free."""
    if isinstance(error, _POOL_FULL):
        return True
    return isinstance(error, CONNECTION_ERRORS) and str(error) == _POOL_FULL_TEXT


#: The URL schemes of valkey-py alone; the server behind them speaks the
#: protocol redis-py does.
_VALKEY_SCHEMES = ("valkey://", "valkeys://")


def plain_for(url: object, plains: tuple[type[Any], ...]) -> type[Any]:
    """The client class of ``plains`` that ``from_url`` builds for ``url``:
    valkey-py's for a valkey URL, else redis-py's.

    Raises:
        TypeError: ``url`` is no str.
        ImportError: a valkey URL, and valkey-py is not installed.
    """
    if not isinstance(url, str):
        raise TypeError(
            "url must be a redis://, rediss://, unix://, valkey:// or valkeys:// "
            f"URL, got {url!r}"
        )
    if not url.startswith(_VALKEY_SCHEMES):
        return plains[0]
    if len(plains) == 1:
        raise ImportError(
            f"url {url!r} needs valkey-py: pip install 'luathrottle[valkey]'"
        )
    return plains[1]


def wrong_client(client: object, accepted: str) -> TypeError:
    """The error for a ``client`` of none of the classes ``accepted`` names."""
    cls = type(client)
    name = f"{cls.__module__.replace('.client', '')}.{cls.__name__}"
    return TypeError(f"client must be {accepted}, got {name}")


#: The clients each twin takes, named whether or not valkey-py is installed.
SYNC_NAMES = (
    "a redis.Redis, redis.cluster.RedisCluster, valkey.Valkey or "
    "valkey.cluster.ValkeyCluster"
)
ASYNC_NAMES = (
    "a redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster, "
    "valkey.asyncio.Valkey or valkey.asyncio.cluster.ValkeyCluster"
)


def _library(obj: object) -> str:
    return type(obj).__module__.partition(".")[0]


def sync_no_retry(pool: Any) -> Any:
    """A retry policy that never retries, of the library of ``pool``: a
    connection calls it with that library's errors."""
    if _valkey is not None and _library(pool) == "valkey":
        return valkey.retry.Retry(valkey.backoff.NoBackoff(), 0)
    return redis.retry.Retry(redis.backoff.NoBackoff(), 0)


def async_no_retry(pool: Any) -> Any:
    """``sync_no_retry`` for an asyncio pool."""
    if _valkey is not None and _library(pool) == "valkey":
        return valkey.asyncio.retry.Retry(valkey.backoff.NoBackoff(), 0)
    return redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0)
