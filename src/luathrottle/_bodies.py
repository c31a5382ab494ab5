"""The JSON bodies of refused requests, as the throttling chapter shows
them, shared by every framework layer."""

__all__ = ["TOO_MANY_REQUESTS_BODY", "UNAVAILABLE_BODY"]

#: A 429: a limit denied the request.
TOO_MANY_REQUESTS_BODY = b'{"detail":[{"msg":"Too many requests","type":"ratelimit"}]}'
#: A 503: the store failed and the failure policy is ``"deny"``.
UNAVAILABLE_BODY = (
    b'{"detail":[{"msg":"Rate limiting is unavailable","type":"ratelimit"}]}'
)
