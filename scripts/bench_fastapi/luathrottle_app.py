"""luathrottle's app: ``Depends(Throttle(...))`` on ``AsyncRedis``."""

from fastapi import Depends, FastAPI

from bench_fastapi._common import BODY, EXACT_LIMIT, REDIS_URL, THROUGHPUT_LIMIT, client
from luathrottle.backends.redis import AsyncRedis
from luathrottle.fastapi import Throttle

__all__ = ["app"]

app = FastAPI()
_backend = AsyncRedis.from_url(REDIS_URL)


@app.get("/health/")
async def health() -> dict[str, bool]:
    return BODY


@app.get(
    "/throughput/",
    dependencies=[Depends(Throttle(THROUGHPUT_LIMIT, backend=_backend))],
)
async def throughput() -> dict[str, bool]:
    return BODY


@app.get(
    "/exact/",
    dependencies=[Depends(Throttle(EXACT_LIMIT, key=client, backend=_backend))],
)
async def exact() -> dict[str, bool]:
    return BODY
