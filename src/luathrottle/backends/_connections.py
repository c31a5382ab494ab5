"""The connections a Redis backend sends its script calls on, without the
client's retry policy.

redis-py 6 and later retry a command that timed out or lost its connection,
three times with backoff by default. A script call that reached the server
before its reply was lost then runs again, and a hit counts twice; a store
that never answers holds each call for several timeouts and backoffs. So a
backend sends its script calls itself, on a connection of the client's, and
never again: a call is sent at most once, and it lasts at most as long as
the client's timeouts (to connect, and to read), plus the wait for a free
connection. The client itself is left as it is for the user's own commands.

- ``SyncConnections`` makes its own connections, of the client pool's class
  and settings (host, credentials, TLS, timeouts, Sentinel discovery), with
  no retries. A sync pool connects a connection inside ``get_connection``,
  with the client's retries, before anything could change them.
- ``AsyncConnections`` borrows the client pool's connections without
  connecting them (``get_available_connection``), gives each its no-retry
  policy while it holds it, and gives it back as it found it.

Both never open more connections at once than the client's pool may, and a
caller that finds them all busy waits for one, up to the client's socket
timeout (``WAIT`` when it has none): a spike waits its turn rather than
failing. Only when the wait runs out does the call fail, with
``PoolExhaustedError``, which no circuit breaker counts: the store may be
perfectly healthy.

Both serve redis-py's clients and valkey-py's alike, with each library's
own retry class. Error replies arrive as that library's exceptions
(``ResponseError`` and its kin), raised for a lone call and returned in
place for a pipeline; the backend translates them.
"""

import asyncio
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from luathrottle.backends._clients import (
    CONNECTION_ERRORS,
    RESPONSE_ERRORS,
    async_no_retry,
    pool_full,
    sync_no_retry,
)
from luathrottle.backends._per_loop import PerLoop
from luathrottle.exceptions import PoolExhaustedError

__all__ = ["WAIT", "AsyncConnections", "SyncConnections", "store_name"]

#: Seconds a call waits for a free connection when the client has no
#: socket timeout to bound it by.
WAIT = 1.0
#: How often a call that found the client's pool full of other users'
#: connections looks again: asyncio pools wake nobody when one comes back.
_POLL = 0.001

Command = Sequence[str | bytes | int]


def _wait(pool: Any) -> float:
    timeout = pool.connection_kwargs.get("socket_timeout")
    return float(timeout) if timeout else WAIT


def _exhausted(pool: Any, wait: float) -> PoolExhaustedError:
    return PoolExhaustedError(
        f"every connection the client's pool allows ({pool.max_connections}) "
        f"was busy for {wait:g} s; the store was not called"
    )


def _read(connection: Any, count: int, raise_on_error: bool) -> list[Any]:
    replies = []
    for _ in range(count):
        try:
            replies.append(connection.read_response())
        except RESPONSE_ERRORS as error:
            if raise_on_error:
                raise
            replies.append(error)
    return replies


def _ensure_connected(connection: Any) -> None:
    """Connect ``connection``, or connect it again when the server closed
    it while it was idle (a restart, a timeout, CLIENT KILL), as redis-py's
    pool checks what it hands out: nothing has been sent yet. connect(),
    not the lazy connect of a send, which a Sentinel-managed connection
    does not route."""
    connection.connect()
    try:
        stale = connection.can_read()
    except CONNECTION_ERRORS:
        stale = True
    if stale:
        connection.disconnect()
        connection.connect()


def _close_all(connections: list[Any]) -> None:
    for connection in connections:
        connection.disconnect()


class SyncConnections:
    """Connections of a sync client's settings, made here, never retried.

    Args:
        pool: the client's connection pool, whose class, settings and
            ``max_connections`` they follow.
    """

    def __init__(self, pool: Any) -> None:
        settings = dict(pool.connection_kwargs)
        settings["retry"] = sync_no_retry(pool)
        self._make: Callable[[], Any] = lambda: pool.connection_class(**settings)
        self._pool = pool
        self._wait = _wait(pool)
        self._idle: list[Any] = []
        self._made = 0
        self._free = threading.Condition(threading.Lock())
        self._pid = os.getpid()
        # Closed with the backend; the list, not self, so that it can go.
        weakref.finalize(self, _close_all, self._idle)

    def send(self, commands: Sequence[Command], raise_on_error: bool) -> list[Any]:
        """Send ``commands`` in one write and read their replies, once.

        Raises:
            redis.RedisError: the connection failed, or, with
                ``raise_on_error``, a reply was an error.
            PoolExhaustedError: no connection came free in time.
        """
        connection = self._acquire()
        try:
            _ensure_connected(connection)
            connection.send_packed_command(connection.pack_commands(commands))
            return _read(connection, len(commands), raise_on_error)
        finally:
            # A connection that failed was closed by redis-py, and connects
            # again when next used.
            with self._free:
                self._idle.append(connection)
                self._free.notify()

    def close(self) -> None:
        """Close the idle connections; the next call connects again."""
        with self._free:
            idle, self._idle[:] = list(self._idle), []
            self._made -= len(idle)
        _close_all(idle)

    def _acquire(self) -> Any:
        with self._free:
            if self._pid != os.getpid():
                # A forked child must not share its parent's sockets.
                self._pid, self._made = os.getpid(), 0
                self._idle.clear()
            if self._idle:
                return self._idle.pop()
            if self._made < self._pool.max_connections:
                self._made += 1
                return self._make()
            deadline = time.monotonic() + self._wait
            while not self._idle:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _exhausted(self._pool, self._wait)
                self._free.wait(left)
            return self._idle.pop()


class AsyncConnections:
    """The connections of an asyncio client's pool, borrowed one call at a
    time and never retried.

    Args:
        pool: the client's connection pool.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._no_retry = async_no_retry(pool)
        self._wait = _wait(pool)
        # Calls of this backend that hold a connection, per event loop, up
        # to what the pool allows: the rest wait here, in order, rather
        # than finding the pool full.
        self._slots: PerLoop[asyncio.Semaphore] = PerLoop()

    async def send(
        self, commands: Sequence[Command], raise_on_error: bool
    ) -> list[Any]:
        """Send ``commands`` in one write and read their replies, once.

        Raises:
            redis.RedisError: the connection failed, or, with
                ``raise_on_error``, a reply was an error.
            PoolExhaustedError: no connection came free in time.
        """
        slots = self._slots.get(lambda: asyncio.Semaphore(self._pool.max_connections))
        if slots.locked():
            try:
                async with asyncio.timeout(self._wait):
                    await slots.acquire()
            except TimeoutError:
                raise _exhausted(self._pool, self._wait) from None
        else:
            await slots.acquire()
        try:
            connection = await self._borrow()
            retry, connection.retry = connection.retry, self._no_retry
            try:
                await self._pool.ensure_connection(connection)
                await connection.send_packed_command(connection.pack_commands(commands))
                replies = []
                for _ in range(len(commands)):
                    try:
                        replies.append(await connection.read_response())
                    except RESPONSE_ERRORS as error:
                        if raise_on_error:
                            raise
                        replies.append(error)
                return replies
            finally:
                connection.retry = retry
                await self._pool.release(connection)
        finally:
            slots.release()

    async def _borrow(self) -> Any:
        """A connection of the pool, not yet connected. Only other users of
        the client can fill the pool here: poll for theirs to come back."""
        deadline = None
        while True:
            try:
                return self._pool.get_available_connection()
            except CONNECTION_ERRORS as error:
                if not pool_full(error):
                    raise
                now = time.monotonic()
                deadline = deadline or now + self._wait
                if now >= deadline:
                    raise _exhausted(self._pool, self._wait) from None
                await asyncio.sleep(_POLL)


def store_name(client: Any) -> str:
    """What metrics call the server of ``client``: its address, never its
    password."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if "path" in kwargs:
        return f"redis unix:{kwargs['path']}/{kwargs.get('db', 0)}"
    if "host" in kwargs:
        port, db = kwargs.get("port", 6379), kwargs.get("db", 0)
        return f"redis {kwargs['host']}:{port}/{db}"
    return f"redis {type(client).__name__}"
