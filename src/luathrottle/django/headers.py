"""Header providers under the name the throttling chapter imports them by.

``from dmr.throttling.headers import XRateLimit`` ports as
``from luathrottle.django.headers import XRateLimit``. The providers live in
``luathrottle.headers``, which limiters use too; these are the same objects.
"""

from luathrottle.headers import (
    BaseResponseHeadersProvider,
    RateLimitIETFDraft,
    RetryAfter,
    XRateLimit,
)

__all__ = [
    "BaseResponseHeadersProvider",
    "RateLimitIETFDraft",
    "RetryAfter",
    "XRateLimit",
]
