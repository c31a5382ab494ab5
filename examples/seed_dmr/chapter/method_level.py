"""Defining throttling: method level."""

from dmr import Controller, modify
from dmr.plugins.pydantic import PydanticSerializer

from luathrottle.dmr import Rate, SyncThrottle


class SyncController(Controller[PydanticSerializer]):
    @modify(throttling=[SyncThrottle(1, Rate.minute)])
    def get(self) -> str:
        return "inside"
