"""Throttling execution: an IP-based throttle after auth. The async twin
is not printed by the chapter."""

from dmr import Controller, modify
from dmr.plugins.pydantic import PydanticSerializer
from dmr.security.django_session import (
    DjangoSessionAsyncAuth,
    DjangoSessionSyncAuth,
)

from luathrottle.dmr import AsyncThrottle, Rate, RemoteAddr, SyncThrottle


class SyncController(Controller[PydanticSerializer]):
    @modify(
        auth=[DjangoSessionSyncAuth()],
        throttling=[
            SyncThrottle(
                1,
                Rate.minute,
                cache_key=RemoteAddr(runs_before_auth=False),
            ),
        ],
    )
    def get(self) -> str:
        return "inside"


class AsyncController(Controller[PydanticSerializer]):
    @modify(
        auth=[DjangoSessionAsyncAuth()],
        throttling=[
            AsyncThrottle(
                1,
                Rate.minute,
                cache_key=RemoteAddr(runs_before_auth=False),
            ),
        ],
    )
    async def get(self) -> str:
        return "inside"
