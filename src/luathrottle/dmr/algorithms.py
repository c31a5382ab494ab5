"""Algorithms under the name the throttling chapter imports them by.

``from dmr.throttling.algorithms import LeakyBucket`` ports as
``from luathrottle.dmr.algorithms import LeakyBucket``. The algorithms live
in ``luathrottle.algorithms``; these are the same objects.
"""

from luathrottle.django.algorithms import (
    BaseThrottleAlgorithm,
    LeakyBucket,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)

__all__ = [
    "BaseThrottleAlgorithm",
    "LeakyBucket",
    "SimpleRate",
    "SlidingWindow",
    "TokenBucket",
]
