"""An ASGI app limited by luathrottle, its metrics at ``/metrics``.

Each client, named by its ``X-Client`` header, may make 20 requests a
minute; a second limit of 10 a minute is on trial (shadow mode), so it
refuses nothing, and the admissions that leave less than half the quota
are reported as near the limit. Every decision is counted by
``luathrottle.prometheus.PrometheusObserver`` and served in Prometheus'
text format by prometheus-client.

Serve it on the embedded backend (one process)::

    python -m uvicorn metrics_app:app --app-dir examples

``scripts/metrics_demo.py`` serves it, drives traffic and prints the scrape.
"""

from prometheus_client import CollectorRegistry, make_asgi_app
from starlette.types import Receive, Scope, Send

import luathrottle
from luathrottle import Limit
from luathrottle.asgi import RateLimitMiddleware
from luathrottle.prometheus import PrometheusObserver

registry = CollectorRegistry()
luathrottle.add_observer(PrometheusObserver(registry=registry))
metrics = make_asgi_app(registry=registry)


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello\n"})


def client(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-client":
            return str(value.decode("latin-1"))
    return None


limited = RateLimitMiddleware(
    hello,
    [Limit(20, 60, name="20/minute"), Limit(10, 60, name="trial", shadow=True)],
    key=client,
    near_limit=0.5,
)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http" and scope["path"] == "/metrics":
        await metrics(scope, receive, send)
    else:
        await limited(scope, receive, send)
