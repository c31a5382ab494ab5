"""AsyncConcurrencyThrottle served by uvicorn (two workers) on real Redis:
real concurrent requests, a plain view and a streaming one, and clients
that leave while their slots are being taken."""

import concurrent.futures
import os
import shutil
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import redis

from luathrottle import ConcurrencyLimiter
from luathrottle.backends.redis import SyncRedis
from luathrottle.scripts import get_script
from servers import RedisServer, free_port, wait_until
from tcp_proxy import TcpProxy
from test_asgi import get, stop, up

TESTS = Path(__file__).resolve().parent
DB = 13
WAIT = 10
#: Replies of the late store come this late while a test wants them so:
#: long after a client that leaves has gone.
LATE = 0.5


@pytest.fixture(scope="module")
def late(tmp_path_factory):
    """A redis-server of the module's own, behind a proxy that can make its
    replies late; and a client of the server itself."""
    server = RedisServer(
        shutil.which("redis-server") or "redis-server",
        str(tmp_path_factory.mktemp("late-redis")),
    )
    server.start()
    direct = redis.Redis.from_url(server.url)
    # Loaded directly, so that no call through the proxy loads the scripts.
    ConcurrencyLimiter(1, lease=1, backend=SyncRedis(direct)).acquire("x").release()
    proxy = TcpProxy(server.port)
    try:
        yield proxy, direct
    finally:
        proxy.close()
        direct.close()
        server.stop()


pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def served(redis_url, late, tmp_path_factory):
    parts = urllib.parse.urlsplit(redis_url)
    url = urllib.parse.urlunsplit(parts._replace(path=f"/{DB}"))
    store = redis.Redis.from_url(url)
    store.flushdb()
    env = {
        **os.environ,
        "LUATHROTTLE_REDIS_URL": url,
        "LUATHROTTLE_LATE_REDIS_URL": late[0].url,
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


def held(store):
    """Leases held by the two-slots view's throttles (lease 45 s) in
    ``store``."""
    tag = get_script("concurrency").key_tag
    return sum(store.zcard(key) for key in store.scan_iter(f"*:{tag}:*/45000ms"))


def test_clients_that_leave_while_slots_are_taken_leave_none_held(served, late):
    port, near = served
    proxy, far = late
    proxy.delay = LATE
    try:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
                client.sendall(b"GET /two-slots/ HTTP/1.1\r\nHost: test\r\n\r\n")
                # The first slot is taken, and the store of the second has
                # taken it too but not answered yet: the client leaves.
                wait_until(lambda: (held(near), held(far)) == (1, 1), WAIT)
            wait_until(lambda: (held(near), held(far)) == (0, 0), WAIT)
    finally:
        proxy.delay = 0.0
    assert get(port, "/two-slots/", "c")[:3:2] == (200, b"done")
