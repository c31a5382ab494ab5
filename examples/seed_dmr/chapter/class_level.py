"""Defining throttling: class level."""

from dmr import Controller
from dmr.plugins.pydantic import PydanticSerializer

from luathrottle.dmr import AsyncThrottle, Rate


class AsyncController(Controller[PydanticSerializer]):
    throttling = (AsyncThrottle(1, Rate.minute),)

    async def get(self) -> str:
        return "inside"
