"""A Flask app for tests/test_flask_served.py, served by gunicorn workers:
``/hit/<key>`` admits 5 requests a day per key, counted on the Redis of
``LUATHROTTLE_REDIS_URL`` within the scope ``LUATHROTTLE_TEST_SCOPE``."""

import os

from flask import Flask, request

from luathrottle.flask import Throttle

app = Flask(__name__)
app.config["LUATHROTTLE_STORAGE_URL"] = os.environ["LUATHROTTLE_REDIS_URL"]
throttle = Throttle(app, key=lambda: request.view_args["key"])


@app.after_request
def worker(response):  # type: ignore[no-untyped-def]
    response.headers["X-Pid"] = str(os.getpid())
    return response


@app.get("/health")
@throttle.exempt
def health() -> str:
    return "ok"


@app.get("/hit/<key>")
@throttle.limit("5/day", scope=os.environ["LUATHROTTLE_TEST_SCOPE"])
def hit(key: str) -> str:
    return "ok"
