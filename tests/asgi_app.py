"""The app the ASGI tests serve with uvicorn: Starlette guarded by
RateLimitMiddleware, with a lifespan and a websocket route, and a FastAPI
app mounted at /api whose routes take Throttle dependencies. Counters live
on the harness's Redis (LUATHROTTLE_REDIS_URL), shared by every worker.
"""

import contextlib
import os

from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from luathrottle.asgi import RateLimitMiddleware, client_address
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.fastapi import SyncThrottle, Throttle
from luathrottle.headers import RateLimitIETFDraft

URL = os.environ["LUATHROTTLE_REDIS_URL"]
async_backend = AsyncRedis.from_url(URL)
sync_backend = SyncRedis.from_url(URL)


def tester(request: Request) -> str | None:
    """Each test names its own client, so tests never share counters."""
    return request.headers.get("x-client")


api = FastAPI()


@api.get(
    "/async",
    dependencies=[Depends(Throttle("2/minute", key=tester, backend=async_backend))],
)
async def async_route() -> str:
    return "inside"


@api.get(
    "/sync",
    dependencies=[Depends(SyncThrottle("2/minute", key=tester, backend=sync_backend))],
)
def sync_route() -> str:
    return "inside"


shared = Throttle(
    "3/minute",
    key=tester,
    backend=async_backend,
    scope="shared",
    response_headers=[RateLimitIETFDraft()],
)


@api.get("/shared-a", dependencies=[Depends(shared)])
async def shared_a() -> str:
    return "a"


@api.get("/shared-b", dependencies=[Depends(shared)])
async def shared_b() -> str:
    return "b"


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    app.state.started = os.getpid()
    yield


async def health(request: Request) -> JSONResponse:
    return JSONResponse("up")


async def inside(request: Request) -> JSONResponse:
    return JSONResponse({"started": request.app.state.started})


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)


def middleware_key(scope) -> str | None:
    """The client address and the test's own name; /api and /health are
    left to their own throttles, or none."""
    if scope["path"].startswith(("/api", "/health")):
        return None
    named = dict(scope["headers"]).get(b"x-client", b"").decode()
    return f"{client_address(scope)}|{named}"


inner = Starlette(
    routes=[
        Route("/health/", health),
        Route("/inside", inside),
        WebSocketRoute("/ws", echo),
        Mount("/api", app=api),
    ],
    lifespan=lifespan,
)
app = RateLimitMiddleware(inner, "3/minute", key=middleware_key, backend=async_backend)
