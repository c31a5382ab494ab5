"""What the Redis backends' twins share: the client and its checks, the
guard, the traits, whether calls go out as functions, and whether they
coalesce (``backends._coalescing``)."""

from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Self, TypeVar

from luathrottle._breaker import CircuitBreaker, guard_for
from luathrottle.backends import _clients
from luathrottle.backends._clients import NO_SCRIPT, AsyncClient, SyncClient
from luathrottle.backends._connections import (
    AsyncConnections,
    SyncConnections,
    store_name,
)
from luathrottle.backends._redis_calls import Via, function_trouble, load_failure
from luathrottle.backends.base import StoreTraits

__all__ = ["RedisBase"]


def _timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
    if not 0 < timeout <= 60:
        raise ValueError(f"timeout must be above 0 and at most 60, got {timeout!r}")
    return float(timeout)


_ClientT = TypeVar("_ClientT", SyncClient, AsyncClient)


class RedisBase(Generic[_ClientT]):
    """What both twins share: the client, its checks, the guard, traits."""

    #: The clients of one server (Sentinel's primary too) and of a cluster
    #: that the twin takes, redis-py's first; and their names, for errors.
    _plains: ClassVar[tuple[type[Any], ...]]
    _clusters: ClassVar[tuple[type[Any], ...]]
    _names: ClassVar[str]
    #: What sends calls on one server; a cluster's are routed by redis-py.
    _connections_type: ClassVar[type[SyncConnections] | type[AsyncConnections]]

    def __init__(
        self,
        client: _ClientT,
        *,
        breaker: CircuitBreaker | Literal[False] | None = None,
        functions: bool | None = None,
        coalesce: bool | None = None,
    ) -> None:
        if not isinstance(client, self._plains + self._clusters):
            raise _clients.wrong_client(client, self._names)
        if functions is not None and not isinstance(functions, bool):
            raise TypeError(f"functions must be a bool or None, got {functions!r}")
        if coalesce is not None and not isinstance(coalesce, bool):
            raise TypeError(f"coalesce must be a bool or None, got {coalesce!r}")
        self.client = client
        cluster = isinstance(client, self._clusters)
        self._guard = guard_for(breaker, store_name(client), default=not cluster)
        self._traits = StoreTraits(self, single_slot_calls=cluster)
        # Whether calls go out as FCALL; turned off for good when the server
        # or the ACL turns functions down. redis-py finds EVALSHA's slot by
        # itself but asks a node for FCALL's keys (COMMAND GETKEYS), a round
        # trip more per call, so clusters use EVALSHA unless told otherwise.
        self._functions = not cluster if functions is None else functions
        self._connections = (
            None if cluster else self._connections_type(client.connection_pool)
        )
        # A cluster's batch is no pipeline but one call per node at once
        # (see ``_pipeline``): it would share no round trip, only wait for
        # the slowest call, one batch at a time.
        self._coalesce(not cluster if coalesce is None else coalesce)

    if TYPE_CHECKING:
        # The twin's coalescing half: ``backends._coalescing``.
        def _coalesce(self, on: bool) -> None: ...

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
        coalesce: bool | None = None,
    ) -> Self:
        """A backend on a new client for ``url``, with bounded timeouts.

        Args:
            url: a ``redis://``, ``rediss://`` or ``unix://`` URL for a
                redis-py client, or a ``valkey://`` or ``valkeys://`` URL
                for a valkey-py one.
            timeout: seconds to connect, and to wait for each reply.
            breaker: as for the constructor.
            functions: as for the constructor.
            coalesce: as for the constructor.

        Raises:
            TypeError, ValueError: naming ``url`` or ``timeout``.
            ImportError: a valkey URL, and valkey-py is not installed.
        """
        client = _clients.plain_for(url, cls._plains).from_url(
            url, socket_timeout=_timeout(timeout), socket_connect_timeout=timeout
        )
        return cls(client, breaker=breaker, functions=functions, coalesce=coalesce)

    def _via(self) -> Via:
        return "function" if self._functions else "sha"

    def _reruns_by_source(self, error: Exception) -> bool:
        """Whether a call that failed with ``error`` ran nothing for want of
        its script or function, so that EVAL may run it again; a missing
        function is to be loaded, and unusable functions turn them off."""
        if isinstance(error, NO_SCRIPT):
            return True
        trouble = function_trouble(error) if self._functions else None
        if trouble == "unusable":
            self._functions = False
        return trouble is not None

    def _load_targets(self) -> list[Any]:
        """Where a library goes while functions are in use: the server
        (None), or each primary of a cluster in turn, so that one that has
        it already does not keep it from the others."""
        if not self._functions:
            return []
        if isinstance(self.client, self._clusters):
            return list(self.client.get_primaries())
        return [None]

    def _load_failed(self, error: Exception) -> None:
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
