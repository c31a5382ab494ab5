"""Cache keys under the name the throttling chapter imports them by.

``from dmr.throttling.cache_keys import RemoteAddr`` ports as
``from luathrottle.dmr.cache_keys import RemoteAddr``. On dmr controllers
the keys are dmr's own, which read dmr's request; these are the same
objects.
"""

from luathrottle.dmr import BaseThrottleCacheKey, JwtToken, RemoteAddr, UserPk

__all__ = ["BaseThrottleCacheKey", "JwtToken", "RemoteAddr", "UserPk"]
