"""Headers: RateLimitIETFDraft."""

from dmr import Controller
from dmr.plugins.pydantic import PydanticSerializer

from luathrottle.dmr import Rate, RateLimitIETFDraft, SyncThrottle


class SyncController(Controller[PydanticSerializer]):
    throttling = (
        SyncThrottle(1, Rate.minute, response_headers=[RateLimitIETFDraft()]),
    )

    def get(self) -> str:
        return "inside"
