"""``count_when=`` at the doors whose throttles never see the response: the
FastAPI dependency and dmr's throttles, settled by their door's
``CountWhenMiddleware``. A login route counts only its failures: successes
are refunded once the response is made, failures run out of the quota, and
a request a throttle refused is not refunded."""

import multiprocessing
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from dmr import Controller, ResponseSpec, modify
from dmr.exceptions import NotAuthenticatedError
from dmr.plugins.pydantic import PydanticSerializer
from dmr.test import DMRAsyncRequestFactory, DMRRequestFactory
from fastapi import Depends, FastAPI, HTTPException
from fastapi import Response as FastAPIResponse

from count_when_worker import log_in_concurrently, log_in_to_dmr
from luathrottle.dmr import AsyncThrottle as DmrAsyncThrottle
from luathrottle.dmr import CountWhenMiddleware as DmrCountWhen
from luathrottle.dmr import Rate
from luathrottle.dmr import SyncThrottle as DmrSyncThrottle
from luathrottle.fastapi import CountWhenMiddleware, SyncThrottle, Throttle

ADDRESS = "192.0.2.7"


def failed(response: Any) -> bool:
    """A login route's outcomes that count."""
    return response.status_code in (401, 403)


class Outcome:
    """The status the next response has."""

    status = 200


Door = Callable[[], Awaitable[int]]


@pytest.fixture(autouse=True)
def quiet_unsafe_cache():
    """MemoryBackend is per process, which these tests know."""
    with override_settings(LUATHROTTLE={"allow_unsafe_cache": None}):
        yield


def fastapi_app(guard: Any, outcome: Outcome, middleware: bool = True) -> FastAPI:
    app = FastAPI()
    if middleware:
        app.add_middleware(CountWhenMiddleware)

    @app.post("/login", dependencies=[Depends(guard)])
    async def login(response: FastAPIResponse) -> dict[str, str]:
        if outcome.status == 401:
            raise HTTPException(401, "wrong password")
        response.status_code = outcome.status
        return {}

    return app


def poster(app: Any, path: str = "/login") -> Door:
    async def post() -> int:
        transport = httpx.ASGITransport(app=app, client=(ADDRESS, 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return (await c.post(path)).status_code

    return post


def dmr_view(guard: Any, outcome: Outcome) -> Any:
    spec = modify(
        throttling=[guard],
        status_code=200,
        extra_responses=[ResponseSpec(Controller.error_model, status_code=401)],
    )
    if isinstance(guard, DmrAsyncThrottle):

        class AsyncLogin(Controller[PydanticSerializer]):
            @spec
            async def post(self) -> str:
                if outcome.status == 401:
                    raise NotAuthenticatedError
                return "welcome"

        return AsyncLogin.as_view()

    class Login(Controller[PydanticSerializer]):
        @spec
        def post(self) -> str:
            if outcome.status == 401:
                raise NotAuthenticatedError
            return "welcome"

    return Login.as_view()


def sync_dmr_door(backend: Any, outcome: Outcome, clock: Any) -> Door:
    guard = DmrSyncThrottle(
        2, Rate.minute, backend=backend, clock=clock, count_when=failed
    ).replace()  # count_when survives dmr's replace()
    served = DmrCountWhen(dmr_view(guard, outcome))
    factory = DMRRequestFactory()

    async def post() -> int:
        return served(factory.post("/", REMOTE_ADDR=ADDRESS)).status_code

    return post


def async_dmr_door(backend: Any, outcome: Outcome, clock: Any) -> Door:
    guard = DmrAsyncThrottle(
        2, Rate.minute, backend=backend, clock=clock, count_when=failed
    )
    served = DmrCountWhen(dmr_view(guard, outcome))
    factory = DMRAsyncRequestFactory()

    async def post() -> int:
        return (await served(factory.post("/", REMOTE_ADDR=ADDRESS))).status_code

    return post


def fastapi_door(backend: Any, outcome: Outcome, clock: Any) -> Door:
    guard = Throttle("2/minute", backend=backend, clock=clock, count_when=failed)
    return poster(fastapi_app(guard, outcome))


def sync_fastapi_door(backend: Any, outcome: Outcome, clock: Any) -> Door:
    guard = SyncThrottle("2/minute", backend=backend, clock=clock, count_when=failed)
    return poster(fastapi_app(guard, outcome))


SYNC_DOORS = {"dmr": sync_dmr_door, "fastapi_sync": sync_fastapi_door}
ASYNC_DOORS = {"async_dmr": async_dmr_door, "fastapi": fastapi_door}


async def check_only_failures_count(door: Door, outcome: Outcome) -> None:
    outcome.status = 200
    assert [await door() for _ in range(5)] == [200] * 5
    outcome.status = 401
    assert [await door() for _ in range(3)] == [401, 401, 429]
    # The refused request spent nothing and is not refunded: still denied.
    outcome.status = 200
    assert await door() == 429


@pytest.mark.parametrize("name", sorted(SYNC_DOORS))
async def test_sync_doors_count_only_failures(name, sync_backend, clock):
    outcome = Outcome()
    door = SYNC_DOORS[name](sync_backend, outcome, clock)
    await check_only_failures_count(door, outcome)


@pytest.mark.parametrize("name", sorted(ASYNC_DOORS))
async def test_async_doors_count_only_failures(name, async_backend, clock):
    outcome = Outcome()
    door = ASYNC_DOORS[name](async_backend, outcome, clock)
    await check_only_failures_count(door, outcome)


async def test_dmr_middleware_of_the_other_kind_refunds_too(clock):
    """Django runs a sync view under an async middleware chain (ASGI), and
    an async view under a sync one (WSGI): the middleware refunds either
    kind of throttle from either kind of chain."""
    outcome = Outcome()
    sync_view = dmr_view(
        DmrSyncThrottle(2, Rate.minute, clock=clock, count_when=failed), outcome
    )
    async_view = dmr_view(
        DmrAsyncThrottle(2, Rate.minute, clock=clock, count_when=failed), outcome
    )

    async def under_asgi(request: Any) -> Any:
        return await sync_to_async(sync_view)(request)

    def under_wsgi(request: Any) -> Any:
        return async_to_sync(async_view)(request)

    served_async = DmrCountWhen(under_asgi)
    served_sync = DmrCountWhen(under_wsgi)
    factory = DMRRequestFactory()

    async def post() -> int:
        request = factory.post("/", REMOTE_ADDR=ADDRESS)
        return (await served_async(request)).status_code

    async def post_sync() -> int:
        request = factory.post("/", REMOTE_ADDR=ADDRESS)
        return (await sync_to_async(served_sync)(request)).status_code

    await check_only_failures_count(post, outcome)
    await check_only_failures_count(post_sync, outcome)


async def test_fastapi_without_the_middleware_is_refused_by_name():
    guard = Throttle("2/minute", count_when=failed)
    app = fastapi_app(guard, Outcome(), middleware=False)
    transport = httpx.ASGITransport(app=app, client=(ADDRESS, 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        with pytest.raises(RuntimeError, match="CountWhenMiddleware"):
            await c.post("/login")


def test_dmr_without_the_middleware_is_refused_by_name():
    view = dmr_view(DmrSyncThrottle(2, Rate.minute, count_when=failed), Outcome())
    with pytest.raises(ImproperlyConfigured, match="CountWhenMiddleware"):
        view(DMRRequestFactory().post("/", REMOTE_ADDR=ADDRESS))


async def test_fastapi_refusal_by_another_throttle_refunds_nothing(clock):
    """A request another throttle refuses never reached the route: what the
    first throttle spent stays spent, whatever ``count_when`` says."""
    login = Throttle("5/minute", clock=clock, count_when=failed, scope="login")
    tight = Throttle("1/minute", clock=clock, scope="tight")
    app = FastAPI()
    app.add_middleware(CountWhenMiddleware)

    @app.post("/login", dependencies=[Depends(login), Depends(tight)])
    async def log_in() -> dict[str, str]:
        return {}

    post = poster(app)
    assert [await post() for _ in range(3)] == [200, 429, 429]
    # The success was refunded, the two refusals were not: 3 of 5 left.
    decision = await login.limiter_for("login").peek(ADDRESS)
    assert decision.limits[0].remaining == 3


@pytest.mark.parametrize(
    "build",
    [
        lambda bad: Throttle("1/minute", count_when=bad),
        lambda bad: SyncThrottle("1/minute", count_when=bad),
        lambda bad: DmrSyncThrottle(1, Rate.minute, count_when=bad),
        lambda bad: DmrAsyncThrottle(1, Rate.minute, count_when=bad),
    ],
    ids=["fastapi", "fastapi_sync", "dmr", "dmr_async"],
)
def test_count_when_must_be_callable(build):
    with pytest.raises(TypeError, match="count_when"):
        build(401)


def check_the_limit_holds(results: list[list[int]], redis_client: Any) -> None:
    answers = [status for result in results for status in result]
    assert len(answers) == 3 * 3 * 16
    # Every failure the route answered was counted, and no more than the
    # limit ever were, however many were pending at once.
    assert answers.count(401) == int(redis_client.get("failures")) <= 10
    # Successes were refunded: more got in than the limit.
    assert answers.count(200) + answers.count(401) > 10
    assert 429 in answers
    assert set(answers) <= {200, 401, 429}


@pytest.mark.parametrize(
    "worker", [log_in_concurrently, log_in_to_dmr], ids=["fastapi", "dmr"]
)
def test_processes_never_count_more_than_the_limit(worker, redis_url, redis_client):
    """Three processes each send logins from 3 concurrent tasks or threads,
    every other one a failure, to a login route that allows 10 failures a
    minute, on real Redis: Redis counts every failure the route answered,
    and never more than 10."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        results = pool.starmap(worker, [(redis_url, 3, 16)] * 3)
    check_the_limit_holds(results, redis_client)
