"""Algorithms: LeakyBucket."""

from dmr import Controller
from dmr.plugins.pydantic import PydanticSerializer

from luathrottle.dmr import LeakyBucket, Rate, SyncThrottle


class SyncController(Controller[PydanticSerializer]):
    throttling = (
        SyncThrottle(
            max_requests=1,
            duration_in_seconds=Rate.minute,
            algorithm=LeakyBucket(),
        ),
    )

    def get(self) -> str:
        return "inside"
