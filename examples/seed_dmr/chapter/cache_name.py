"""Backends: the 'throttling' Django cache."""

from dmr import Controller
from dmr.plugins.pydantic import PydanticSerializer

from luathrottle.dmr import Rate, SyncDjangoCache, SyncThrottle


class SyncController(Controller[PydanticSerializer]):
    throttling = (
        SyncThrottle(
            max_requests=1,
            duration_in_seconds=Rate.minute,
            backend=SyncDjangoCache(cache_name="throttling"),
        ),
    )

    def get(self) -> str:
        return "inside"
