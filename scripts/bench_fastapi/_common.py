"""What the three apps share: the routes, their limits, the client key."""

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only a type: the benchmark reads the limits without FastAPI installed.
    from starlette.requests import Request

__all__ = [
    "BODY",
    "EXACT",
    "EXACT_LIMIT",
    "HEADER",
    "REDIS_URL",
    "THROUGHPUT_LIMIT",
    "client",
]

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
#: ``/throughput/``: never reached within a run, so every request is a full
#: admitted hit, counted and stored.
THROUGHPUT_LIMIT = "1000000000/hour"
#: ``/exact/``: a burst of concurrent requests far above it shows how many a
#: library lets through.
EXACT = 10
EXACT_LIMIT = f"{EXACT}/minute"
#: The client identity on ``/exact/``: each burst names a fresh one, so that
#: runs on the same Redis within the window count from zero.
HEADER = "x-client"
BODY = {"inside": True}


def client(request: "Request") -> str:
    """The burst's identity, or the client's address without one."""
    named = request.headers.get(HEADER)
    if named:
        return named
    return request.client.host if request.client else "-"
