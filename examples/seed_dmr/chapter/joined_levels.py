"""Defining throttling: class and method levels."""

from dmr import Controller, modify
from dmr.plugins.pydantic import PydanticSerializer

from luathrottle.dmr import Rate, SyncThrottle


class SyncController(Controller[PydanticSerializer]):
    throttling = (SyncThrottle(5, Rate.hour),)

    @modify(throttling=[SyncThrottle(1, Rate.minute)])
    def get(self) -> str:
        return "inside"
