"""slowapi's app: ``@limiter.limit(...)`` on limits' Redis storage, as
slowapi's documentation sets it up (its checks are sync redis-py calls)."""

from fastapi import FastAPI, Request
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address

from bench_fastapi._common import BODY, EXACT_LIMIT, REDIS_URL, THROUGHPUT_LIMIT, client

__all__ = ["app"]

limiter = Limiter(key_func=get_remote_address, storage_uri=REDIS_URL)
app = FastAPI()
app.state.limiter = limiter
# slowapi's handler takes its own exception, which Starlette's types do not allow.
app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]


@app.get("/health/")
async def health() -> dict[str, bool]:
    return BODY


@app.get("/throughput/")
@limiter.limit(THROUGHPUT_LIMIT)
async def throughput(request: Request) -> dict[str, bool]:
    return BODY


@app.get("/exact/")
@limiter.limit(EXACT_LIMIT, key_func=client)
async def exact(request: Request) -> dict[str, bool]:
    return BODY
