"""Headers: X-RateLimit-* only, no Retry-After."""

from dmr import Controller
from dmr.plugins.pydantic import PydanticSerializer

from luathrottle.dmr import AsyncThrottle, Rate, XRateLimit


class AsyncController(Controller[PydanticSerializer]):
    throttling = (AsyncThrottle(1, Rate.minute, response_headers=[XRateLimit()]),)

    async def get(self) -> str:
        return "inside"
