"""Rates: 5 requests in 10 seconds. The chapter sets it in DMR_SETTINGS;
here one controller carries it, as in seed_project."""

from dmr import Controller
from dmr.plugins.pydantic import PydanticSerializer

from luathrottle.dmr import SyncThrottle


class SyncController(Controller[PydanticSerializer]):
    throttling = (SyncThrottle(max_requests=5, duration_in_seconds=10),)

    def get(self) -> str:
        return "inside"
