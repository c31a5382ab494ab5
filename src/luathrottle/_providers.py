"""The ``response_headers`` argument that throttles, the ASGI middleware and
the FastAPI dependency take, checked in one place."""

from collections.abc import Iterable

from luathrottle.headers import BaseResponseHeadersProvider, RetryAfter, XRateLimit

__all__ = ["DEFAULT_PROVIDERS", "check_providers"]

#: One pair for everything that sets no providers, so that their headers
#: group at once.
DEFAULT_PROVIDERS: tuple[BaseResponseHeadersProvider, ...] = (
    XRateLimit(),
    RetryAfter(),
)


def check_providers(
    response_headers: Iterable[BaseResponseHeadersProvider] | None,
) -> tuple[BaseResponseHeadersProvider, ...]:
    """Validate ``response_headers``; None means ``XRateLimit, RetryAfter``.

    Raises:
        TypeError: naming ``response_headers``.
    """
    if response_headers is None:
        return DEFAULT_PROVIDERS
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
