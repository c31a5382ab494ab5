"""A WSGI app that gunicorn's workers serve in tests/test_prometheus_served.py.

``/hit?key=K`` hits a limiter on the real Redis at ``LUATHROTTLE_REDIS_URL``
(429 once denied) and names the worker in ``X-Pid``; ``/metrics`` shows
every worker's metrics, read from ``PROMETHEUS_MULTIPROC_DIR``.
"""

import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

import luathrottle
from luathrottle import LeakyBucket, Limit, Limiter
from luathrottle.backends.redis import SyncRedis
from luathrottle.prometheus import PrometheusObserver

#: A day's worth: a leaky bucket leaks no whole unit while the test runs.
LIMIT = Limit(5, 86400)

luathrottle.add_observer(PrometheusObserver())
limiter = Limiter(
    [LIMIT],
    algorithm=LeakyBucket(),
    backend=SyncRedis.from_url(os.environ["LUATHROTTLE_REDIS_URL"], timeout=30),
    scope=os.environ["LUATHROTTLE_TEST_SCOPE"],
)


def application(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    headers = [("X-Pid", str(os.getpid()))]
    if path == "/metrics":
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), *headers])
        return [generate_latest(registry)]
    if path == "/hit":
        [key] = parse_qs(environ["QUERY_STRING"])["key"]
        allowed = limiter.hit(key).allowed
        start_response("200 OK" if allowed else "429 Too Many Requests", headers)
        return [b""]
    start_response("200 OK", headers)
    return [b"ok"]
