"""The ``response_headers`` argument that throttles, the ASGI middleware,
the FastAPI dependency and the Flask extension take, checked in one place,
and the defaults of each door."""

from collections.abc import Iterable

from luathrottle.headers import (
    BaseResponseHeadersProvider,
    RateLimitIETFDraft,
    RetryAfter,
    XRateLimit,
)

__all__ = ["DEFAULT_PROVIDERS", "DRAFT_PROVIDERS", "check_providers"]

Providers = tuple[BaseResponseHeadersProvider, ...]

#: The chapter's default, the Django throttles' and dmr's: one pair for
#: everything that sets no providers, so that their headers group at once.
DEFAULT_PROVIDERS: Providers = (XRateLimit(), RetryAfter())

#: The default of the doors the chapter does not describe (ASGI, FastAPI,
#: Flask, DRF): the IETF draft's fields, in the drafts' own form.
DRAFT_PROVIDERS: Providers = (RateLimitIETFDraft(current_draft=True), RetryAfter())


def check_providers(
    response_headers: Iterable[BaseResponseHeadersProvider] | None,
    default: Providers = DEFAULT_PROVIDERS,
) -> Providers:
    """Validate ``response_headers``; None means the door's ``default``.

    Raises:
        TypeError: naming ``response_headers``.
    """
    if response_headers is None:
        return default
    if isinstance(response_headers, str | bytes) or not isinstance(
        response_headers, Iterable
    ):
        raise TypeError(
            "response_headers must be a list of header providers such as "
            f"[XRateLimit()], got {response_headers!r}"
        )
    providers = tuple(response_headers)
    for provider in providers:
        if not isinstance(provider, BaseResponseHeadersProvider):
            raise TypeError(
                "response_headers must hold BaseResponseHeadersProvider objects "
                f"such as XRateLimit(), got {provider!r}"
            )
    return providers
