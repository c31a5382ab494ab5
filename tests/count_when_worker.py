"""A child process for the count_when tests: a Flask login view, or a
FastAPI login route, under ``count_when``, called from threads or tasks,
half its answers failures; it records what each request was answered."""

import asyncio
import threading

import flask
import httpx
import redis
import redis.asyncio
from fastapi import Depends, FastAPI, HTTPException

from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.fastapi import CountWhenMiddleware
from luathrottle.fastapi import Throttle as FastAPIThrottle
from luathrottle.flask import Throttle


def failed(response: flask.Response) -> bool:
    return response.status_code == 401


def log_in_from_threads(url: str, threads: int, attempts: int) -> list[int]:
    """``attempts`` logins from each of ``threads`` threads, every other one
    failing; return each answer's status. A failure bumps ``failures`` in
    the view, while its request is still pending, so that concurrent
    failures of every process overlap."""
    client = redis.Redis.from_url(url)
    app = flask.Flask(__name__)
    guard = Throttle(app, backend=SyncRedis(client))

    @app.post("/<int:attempt>")
    @guard.limit("10/minute", key=lambda: "one client", count_when=failed)
    def login(attempt: int) -> tuple[str, int]:
        if attempt % 2:
            client.incr("failures")
            return "", 401
        client.get("failures")
        return "", 200

    answers: list[int] = []

    def worker() -> None:
        http = app.test_client()
        for attempt in range(attempts):
            answers.append(http.post(f"/{attempt}").status_code)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    client.close()
    return answers


def log_in_concurrently(url: str, tasks: int, attempts: int) -> list[int]:
    """``log_in_from_threads`` for a FastAPI route: ``attempts`` logins
    from each of ``tasks`` concurrent tasks, on one event loop."""
    return asyncio.run(_log_in(url, tasks, attempts))


async def _log_in(url: str, tasks: int, attempts: int) -> list[int]:
    client = redis.asyncio.Redis.from_url(url)
    guard = FastAPIThrottle(
        "10/minute",
        key=lambda request: "one client",
        backend=AsyncRedis(client),
        count_when=lambda response: response.status_code == 401,
    )
    app = FastAPI()
    app.add_middleware(CountWhenMiddleware)

    @app.post("/{attempt}", dependencies=[Depends(guard)])
    async def login(attempt: int) -> dict[str, str]:
        if attempt % 2:
            await client.incr("failures")
            raise HTTPException(401)
        await client.get("failures")
        return {}

    answers: list[int] = []
    transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:

        async def worker() -> None:
            for attempt in range(attempts):
                answers.append((await http.post(f"/{attempt}")).status_code)

        await asyncio.gather(*(worker() for _ in range(tasks)))
    await client.aclose()
    return answers


def log_in_to_dmr(url: str, threads: int, attempts: int) -> list[int]:
    """``log_in_from_threads`` for a dmr controller, served through
    ``luathrottle.dmr.CountWhenMiddleware``, in a fresh interpreter that
    configures Django first."""
    from django.conf import settings

    from django_settings import build_settings

    settings.configure(**build_settings(url))
    import django

    django.setup()
    from dmr import Controller, ResponseSpec, modify
    from dmr.exceptions import NotAuthenticatedError
    from dmr.plugins.pydantic import PydanticSerializer
    from dmr.test import DMRRequestFactory

    from luathrottle.dmr import CountWhenMiddleware, Rate, SyncThrottle

    client = redis.Redis.from_url(url)
    guard = SyncThrottle(10, Rate.minute, backend=SyncRedis(client), count_when=failed)

    class Login(Controller[PydanticSerializer]):
        @modify(
            throttling=[guard],
            status_code=200,
            extra_responses=[ResponseSpec(Controller.error_model, status_code=401)],
        )
        def post(self) -> str:
            if int(self.request.GET["attempt"]) % 2:
                client.incr("failures")
                raise NotAuthenticatedError
            client.get("failures")
            return "welcome"

    served = CountWhenMiddleware(Login.as_view())
    factory = DMRRequestFactory()
    answers: list[int] = []

    def worker() -> None:
        for attempt in range(attempts):
            request = factory.post(f"/?attempt={attempt}", REMOTE_ADDR="192.0.2.7")
            answers.append(served(request).status_code)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    client.close()
    return answers
