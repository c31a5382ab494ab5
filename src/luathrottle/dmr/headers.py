"""Header providers under the name the throttling chapter imports them by.

``from dmr.throttling.headers import XRateLimit`` ports as
``from luathrottle.dmr.headers import XRateLimit``: the providers of
``luathrottle.dmr``, which keep the chapter's header forms.
"""

from luathrottle.dmr import (
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
