"""Algorithms: LeakyBucket on a login endpoint."""

from dmr import Controller
from dmr.plugins.pydantic import PydanticFastSerializer

from luathrottle.dmr import LeakyBucket, Rate, SyncThrottle


class LoginController(Controller[PydanticFastSerializer]):
    throttling = (
        SyncThrottle(
            max_requests=5,
            duration_in_seconds=Rate.minute,
            algorithm=LeakyBucket(),
        ),
    )

    def post(self) -> str:
        return "logged in"
