"""The test harness: a real redis-server on a port the harness picks.

Set LUATHROTTLE_REDIS_URL to use a server that is already running. Without
it the harness starts its own throwaway redis-server on a free loopback
port. When neither works, real-Redis tests skip on a developer's machine
but fail under CI, so they never skip silently there.
"""

import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio

from cluster_harness import LocalCluster
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from servers import RedisServer
from version_tests import is_version_test

_SERVER: RedisServer | None = None
_SKIP_REASON = ""

#: The test modules that import django-modern-rest (``dmr``) when loaded, or
#: import one that does, or serve the dmr seed project (examples/seed_dmr).
#: dmr 0.16 requires Django 5, so the lowest supported combination (``nox -s
#: lowest``, on Django 4.2) runs without it: there these modules are not
#: collected, and the run's header says which.
_NEED_DMR = [
    "test_client_identity.py",
    "test_count_when_doors.py",
    "test_denial_cache_adapters.py",
    "test_dmr.py",
    "test_e2e_dmr.py",
    "test_every_door.py",
    "test_exemptions.py",
    "test_ietf_headers.py",
    "test_metrics_agree.py",
    "test_penalty_doors.py",
]
collect_ignore = [] if importlib.util.find_spec("dmr") else _NEED_DMR


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--leave-out-version-tests",
        action="store_true",
        help="leave out noxfile.py's VERSION_TESTS, which scripts/test.sh has "
        "nox run at both ends of the supported range",
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if config.getoption("leave_out_version_tests") and is_version_test(
        collection_path.name
    ):
        return True
    return None


def pytest_report_header(config: pytest.Config) -> str | None:
    if not collect_ignore:
        return None
    return (
        f"left out {len(collect_ignore)} test files, as django-modern-rest "
        "(which needs Django 5) is not installed: " + ", ".join(collect_ignore)
    )


def _start_redis() -> str:
    """Start the session's redis-server, or return the configured URL."""
    global _SERVER, _SKIP_REASON
    url = os.environ.get("LUATHROTTLE_REDIS_URL")
    if url:
        return url
    binary = shutil.which("redis-server")
    if binary is None:
        _SKIP_REASON = "redis-server is not installed"
        return "redis://127.0.0.1:1/0"
    _SERVER = RedisServer(binary, tempfile.mkdtemp(prefix="luathrottle-redis-"))
    _SERVER.start()
    return _SERVER.url


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    from django_settings import build_settings

    url = _start_redis()
    os.environ["LUATHROTTLE_REDIS_URL"] = url
    if not settings.configured:
        settings.configure(**build_settings(url))


@pytest.fixture
def redis_admin(redis_client: "redis.Redis[bytes]") -> "redis.Redis[bytes]":
    """The session's server on an emptied database, its stats reset."""
    redis_client.config_resetstat()
    return redis_client


@pytest.fixture
def valkey_client(redis_url: str, redis_admin: object) -> Iterator[Any]:
    """A valkey-py client of the session's server, on an emptied database."""
    import valkey

    client = valkey.Valkey.from_url(redis_url, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
async def async_valkey_client(
    redis_url: str, redis_admin: object
) -> AsyncIterator[Any]:
    """``valkey_client``, asyncio."""
    import valkey.asyncio

    client = valkey.asyncio.Valkey.from_url(redis_url, socket_timeout=5)
    yield client
    await client.aclose()


@pytest.fixture
def valkey_cluster(redis_cluster: LocalCluster) -> Iterator[Any]:
    """A valkey-py client of the session's cluster, emptied."""
    import valkey.cluster

    client = valkey.cluster.ValkeyCluster.from_url(redis_cluster.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def fresh_server(
    tmp_path: Path,
) -> Iterator[tuple[RedisServer, "redis.Redis[bytes]"]]:
    """A redis-server of the test's own, which has never seen a library."""
    server = RedisServer(shutil.which("redis-server") or "redis-server", str(tmp_path))
    server.start()
    admin = redis.Redis.from_url(server.url)
    yield server, admin
    admin.close()
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def _django_closes_its_caches_itself() -> None:
    """Keep Django's own request_finished receiver for the whole session.

    Importing django-valkey (as loading the "django_valkey" cache does)
    swaps it for an async one of django-valkey's, a workaround for Django
    ticket #36047, which Django's async test client then cannot send from a
    running event loop: the other tests would depend on whether a
    django-valkey cache was loaded before them.
    """
    from django.core import signals
    from django.core.cache import close_caches
    from django_valkey.base import close_async_caches

    signals.request_finished.disconnect(close_async_caches)
    signals.request_finished.connect(close_caches)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SERVER is not None:
        _SERVER.stop()
        shutil.rmtree(_SERVER.directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def _unsafe_caches_warn_afresh() -> Iterator[None]:
    """Each test runs under settings changed afresh: luathrottle warns of an
    unsafe cache once per cache per process, and again after the settings
    change, so each test is warned as a fresh process is."""
    from django.conf import settings
    from django.test import override_settings

    with override_settings(LUATHROTTLE=getattr(settings, "LUATHROTTLE", {})):
        yield


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of the real redis-server the session runs."""
    if _SKIP_REASON:
        if os.environ.get("CI"):
            pytest.fail(f"{_SKIP_REASON}; CI must install it (see .ci/run)")
        pytest.skip(_SKIP_REASON)
    return os.environ["LUATHROTTLE_REDIS_URL"]


@pytest.fixture
def redis_client(redis_url: str) -> Iterator["redis.Redis[bytes]"]:
    """A client of the real server, on an emptied database."""
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
async def async_redis_client(
    redis_url: str,
) -> AsyncIterator["redis.asyncio.Redis[bytes]"]:
    """An asyncio client of the real server, on an emptied database."""
    client: redis.asyncio.Redis[bytes] = redis.asyncio.Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


SYNC_BACKENDS = ["memory", "fakeredis", "redis"]


@pytest.fixture(params=SYNC_BACKENDS)
def sync_backend(request: pytest.FixtureRequest):
    """Each sync backend in turn: embedded, fakeredis, real Redis."""
    if request.param == "memory":
        return MemoryBackend(clock=request.getfixturevalue("clock"))
    if request.param == "fakeredis":
        return SyncRedis(fakeredis.FakeRedis())
    return SyncRedis(request.getfixturevalue("redis_client"))


@pytest.fixture(params=SYNC_BACKENDS)
def async_backend(request: pytest.FixtureRequest):
    """Each async backend in turn: embedded, fakeredis, real Redis."""
    if request.param == "memory":
        return MemoryBackend(clock=request.getfixturevalue("clock"))
    if request.param == "fakeredis":
        return AsyncRedis(fakeredis.FakeAsyncRedis())
    return AsyncRedis(request.getfixturevalue("async_redis_client"))


class Clock:
    """A clock that moves only when told to, for the limiter's clock option."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "redis", "django-locmem", "django-redis"])
def every_sync_store(request: pytest.FixtureRequest, clock: Clock) -> Any:
    """Each sync store in turn: the embedded one on ``clock``, Redis, and
    Django's LocMemCache and Redis cache, emptied."""
    if request.param == "memory":
        return MemoryBackend(clock=clock)
    if request.param == "redis":
        return SyncRedis(request.getfixturevalue("redis_client"))
    from django.core.cache import caches

    from luathrottle.backends.django_cache import SyncDjangoCache

    alias = "default" if request.param == "django-locmem" else "redis"
    if alias == "redis":
        request.getfixturevalue("redis_url")  # skips without a server
    caches[alias].clear()
    return SyncDjangoCache(alias, breaker=False)


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, to stop, restart, pause or flush."""
    server = RedisServer(shutil.which("redis-server") or "redis-server", str(tmp_path))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(redis_url: str) -> Iterator[LocalCluster]:
    """A real cluster: three primaries, each with one replica."""
    cluster = LocalCluster(primaries=3, replicas_per_primary=1).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def bench_smoke(redis_url, tmp_path_factory):
    """One smoke run of the whole benchmark without the end-to-end load, as
    ``results.json`` and ``results.md`` hold it: the instruction-counting
    sections take a minute under valgrind, so their tests read this run
    rather than each making its own."""
    from test_bench_smoke import run_bench

    out = tmp_path_factory.mktemp("bench-smoke")
    document = run_bench(redis_url, out, "--skip-e2e")
    return document, (out / "results.md").read_text()


@pytest.fixture
def switching() -> Iterator[None]:
    """Threads switched every microsecond: a race between two steps of one
    thread shows within a test's run."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)
