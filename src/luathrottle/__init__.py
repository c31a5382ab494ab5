"""luathrottle: exact rate limiting, decided by Lua scripts run atomically.

The standalone API lives here; Django throttles live in
``luathrottle.django``, backends in ``luathrottle.backends``.
"""

from luathrottle.algorithms import (
    BaseThrottleAlgorithm,
    LeakyBucket,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.decision import Decision, LimitDecision
from luathrottle.exceptions import BackendError, LuathrottleError
from luathrottle.limiter import AsyncLimiter, Limiter
from luathrottle.rates import Limit, Rate

__all__ = [
    "AsyncLimiter",
    "BackendError",
    "BaseThrottleAlgorithm",
    "Decision",
    "LeakyBucket",
    "Limit",
    "LimitDecision",
    "Limiter",
    "LuathrottleError",
    "Rate",
    "SimpleRate",
    "SlidingWindow",
    "TokenBucket",
]
