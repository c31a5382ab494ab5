"""A child process for the count_when tests: a Flask login view under
``count_when``, called from threads, half its answers failures; it records
what each request was answered."""

import threading

import flask
import redis

from luathrottle.backends.redis import SyncRedis
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
