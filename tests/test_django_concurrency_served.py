"""AsyncConcurrencyThrottle served by uvicorn (two workers) on real Redis:
real concurrent requests, a plain view and a streaming one."""

import concurrent.futures
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import redis

from servers import free_port
from test_asgi import get, stop, up

TESTS = Path(__file__).resolve().parent
DB = 13
WAIT = 10

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def served(redis_url, tmp_path_factory):
    parts = urllib.parse.urlsplit(redis_url)
    url = urllib.parse.urlunsplit(parts._replace(path=f"/{DB}"))
    store = redis.Redis.from_url(url)
    store.flushdb()
    env = {
        **os.environ,
        "LUATHROTTLE_REDIS_URL": url,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])
        ),
    }
    log = tmp_path_factory.mktemp("uvicorn") / "uvicorn.log"
    for _attempt in range(3):
        port = free_port()
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "uvicorn", "concurrency_asgi:application"),
                    *("--host", "127.0.0.1", "--port", str(port)),
                    *("--workers", "2", "--log-level", "warning"),
                ],
                cwd=TESTS,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if up(process, port):
            break
        stop(process)
    else:
        pytest.fail(f"uvicorn did not start:\n{log.read_text()}")
    try:
        yield port, store
    finally:
        stop(process)
        store.close()


def test_served_view_never_holds_more_than_max_in_flight(served):
    port, store = served
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        holders = [pool.submit(get, port, "/slow/", "c") for _ in range(2)]
        assert store.blpop(["entered"], timeout=WAIT)
        assert store.blpop(["entered"], timeout=WAIT)
        refused = [get(port, "/slow/", "c") for _ in range(3)]
        store.rpush("gate", 1, 1)
        done = [future.result(timeout=WAIT) for future in holders]
    assert [status for status, _, _ in done] == [200, 200]
    assert [status for status, _, _ in refused] == [429, 429, 429]
    assert 29 <= int(refused[0][1]["Retry-After"]) <= 30
    store.rpush("gate", 1)
    assert get(port, "/slow/", "c")[0] == 200
    assert store.blpop(["entered"], timeout=WAIT)


def test_served_stream_holds_its_slot_until_its_content_ends(served):
    port, store = served
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        streaming = pool.submit(get, port, "/stream/", "c")
        assert store.blpop(["entered"], timeout=WAIT)
        assert get(port, "/stream/", "c")[0] == 429
        store.rpush("gate", 1)
        status, _, body = streaming.result(timeout=WAIT)
    assert (status, body) == (200, b"first,last")
    store.rpush("gate", 1)
    assert get(port, "/stream/", "c")[:3:2] == (200, b"first,last")
    assert store.blpop(["entered"], timeout=WAIT)
