"""fastapi-limiter's app: ``Depends(RateLimiter(...))`` on pyrate-limiter's
``RedisBucket`` over ``redis.asyncio``.

A ``Limiter`` on an async bucket is built once the event loop runs (its
leaker is a task of the loop, and the bucket loads its script), so the
routes' ``RateLimiter`` get theirs in the lifespan. pyrate-limiter counts
every name a single-bucket ``Limiter`` is given in its one bucket,
whatever fastapi-limiter's identifier says: each route's limit is for all
clients together. The bucket keys are new at each start, so that runs on
the same Redis within the window count from zero.
"""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import redis.asyncio
from fastapi import Depends, FastAPI, Request
from fastapi_limiter.depends import RateLimiter
from pyrate_limiter import Duration, Limiter, Rate, RedisBucket

from bench_fastapi._common import BODY, EXACT, REDIS_URL, client

__all__ = ["app"]


async def _identifier(request: Request) -> str:
    return f"{client(request)}:{request.scope['path']}"


#: Route: its rates and its dependency, whose limiter the lifespan sets.
_LIMITED = {
    "throughput": (
        [Rate(1_000_000_000, Duration.HOUR)],
        RateLimiter(cast(Limiter, None)),
    ),
    "exact": (
        [Rate(EXACT, Duration.MINUTE)],
        RateLimiter(cast(Limiter, None), identifier=_identifier),
    ),
}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    connection = redis.asyncio.Redis.from_url(REDIS_URL)
    run = uuid.uuid4().hex
    for route, (rates, dependency) in _LIMITED.items():
        bucket = await RedisBucket.init(rates, connection, f"bench:{run}:{route}")
        dependency.limiter = Limiter(bucket)
    yield
    await connection.aclose()


app = FastAPI(lifespan=_lifespan)


@app.get("/health/")
async def health() -> dict[str, bool]:
    return BODY


@app.get("/throughput/", dependencies=[Depends(_LIMITED["throughput"][1])])
async def throughput() -> dict[str, bool]:
    return BODY


@app.get("/exact/", dependencies=[Depends(_LIMITED["exact"][1])])
async def exact() -> dict[str, bool]:
    return BODY
