"""luathrottle: exact rate limiting, decided by Lua scripts run atomically.

The standalone API lives here; Django throttles live in
``luathrottle.django``, backends in ``luathrottle.backends``. Importing it
reads no Lua file and starts no Lua runtime: both happen on first use.
"""

from importlib import metadata

from luathrottle._breaker import CircuitBreaker
from luathrottle._events import DecisionEvent, Outcome, add_observer, remove_observer
from luathrottle._refunds import AsyncReservation, Reservation
from luathrottle.algorithms import (
    BaseThrottleAlgorithm,
    LeakyBucket,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.concurrency import AsyncConcurrencyLimiter, ConcurrencyLimiter
from luathrottle.decision import Decision, LimitDecision, Reason
from luathrottle.exceptions import (
    BackendError,
    CircuitOpenError,
    LuathrottleError,
    PoolExhaustedError,
    RateLimited,
    ScriptError,
)
from luathrottle.limiter import AsyncLimiter, Limiter
from luathrottle.rates import Limit, Rate

try:
    #: The installed distribution's version, as ``pip show luathrottle``
    #: reports it.
    __version__ = metadata.version("luathrottle")
except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
    __version__ = "0+unknown"

__all__ = [
    "AsyncConcurrencyLimiter",
    "AsyncLimiter",
    "AsyncReservation",
    "BackendError",
    "BaseThrottleAlgorithm",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConcurrencyLimiter",
    "Decision",
    "DecisionEvent",
    "LeakyBucket",
    "Limit",
    "LimitDecision",
    "Limiter",
    "LuathrottleError",
    "Outcome",
    "PoolExhaustedError",
    "Rate",
    "RateLimited",
    "Reason",
    "Reservation",
    "ScriptError",
    "SimpleRate",
    "SlidingWindow",
    "TokenBucket",
    "__version__",
    "add_observer",
    "remove_observer",
]
