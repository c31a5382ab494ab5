"""Sentinel-managed primaries, Unix-socket and TLS URLs, on real servers."""

import io
import os
import shutil
import subprocess

import pytest
import redis
import redis.asyncio.sentinel
import redis.sentinel
import valkey.asyncio.sentinel
import valkey.sentinel

from luathrottle import AsyncLimiter, Limiter
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.cli import main
from luathrottle.scripts import all_scripts
from servers import RedisSentinel, RedisServer, free_port


@pytest.fixture
def server(redis_url, tmp_path):
    socket_path = str(tmp_path / "redis.sock")
    server = RedisServer(
        shutil.which("redis-server"), str(tmp_path), "--unixsocket", socket_path
    )
    server.socket_path = socket_path
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sentinel(server, tmp_path):
    directory = tmp_path / "sentinel"
    os.mkdir(directory)
    sentinel = RedisSentinel(
        shutil.which("redis-server"), str(directory), server.port, "primary"
    )
    sentinel.start()
    yield sentinel
    sentinel.stop()


def cli(*argv):
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_sentinel_managed_primary(sentinel, server):
    watcher = redis.sentinel.Sentinel([("127.0.0.1", sentinel.port)], socket_timeout=5)
    limiter = Limiter(2, 60, backend=SyncRedis(watcher.master_for("primary")))
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]

    url = f"redis://127.0.0.1:{sentinel.port}"
    status, output = cli("scripts", "check", "--url", url, "--sentinel", "primary")
    assert (status, output.count("\tMISSING\tleaky_bucket")) == (1, 1)
    assert output.startswith(f"127.0.0.1:{server.port}\t")
    assert cli("scripts", "load", "--url", url, "--sentinel", "primary")[0] == 0
    status, output = cli("scripts", "check", "--url", url, "--sentinel", "primary")
    assert (status, output.count("\tok\t")) == (0, 2 * len(all_scripts()))
    for sentinel_client in watcher.sentinels:
        sentinel_client.close()


async def test_async_sentinel_managed_primary(sentinel):
    watcher = redis.asyncio.sentinel.Sentinel([("127.0.0.1", sentinel.port)])
    client = watcher.master_for("primary")
    limiter = AsyncLimiter(1, 60, backend=AsyncRedis(client))
    assert [(await limiter.hit("k")).allowed for _ in range(2)] == [True, False]
    await client.aclose()
    for sentinel_client in watcher.sentinels:
        await sentinel_client.aclose()


def test_valkey_sentinel_managed_primary(sentinel):
    watcher = valkey.sentinel.Sentinel([("127.0.0.1", sentinel.port)], socket_timeout=5)
    limiter = Limiter(2, 60, backend=SyncRedis(watcher.master_for("primary")))
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]
    for sentinel_client in watcher.sentinels:
        sentinel_client.close()


async def test_async_valkey_sentinel_managed_primary(sentinel):
    watcher = valkey.asyncio.sentinel.Sentinel([("127.0.0.1", sentinel.port)])
    client = watcher.master_for("primary")
    limiter = AsyncLimiter(1, 60, backend=AsyncRedis(client))
    assert [(await limiter.hit("k")).allowed for _ in range(2)] == [True, False]
    await client.aclose()
    for sentinel_client in watcher.sentinels:
        await sentinel_client.aclose()


def test_unix_socket_urls(server):
    url = f"unix://{server.socket_path}?db=0"
    status, output = cli("scripts", "load", "--url", url)
    assert status == 0
    assert output.startswith(f"{server.socket_path}\tloaded\t")
    client = redis.Redis.from_url(url)
    limiter = Limiter(1, 60, backend=SyncRedis(client))
    assert [limiter.hit("k").allowed for _ in range(2)] == [True, False]
    client.close()


@pytest.fixture
def tls_url(redis_url, tmp_path):
    """A rediss:// URL of a TLS-only port on a server of its own."""
    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("CI"):
            pytest.fail("openssl is missing; CI needs it for the TLS test")
        pytest.skip("openssl is missing")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    tls_port = free_port()
    server = RedisServer(
        shutil.which("redis-server"),
        str(tmp_path),
        *("--tls-port", str(tls_port), "--tls-cert-file", str(cert)),
        *("--tls-key-file", str(key), "--tls-ca-cert-file", str(cert)),
        *("--tls-auth-clients", "no"),
    )
    server.start()
    yield f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}&ssl_cert_reqs=required"
    server.stop()


def test_rediss_urls(tls_url):
    status, output = cli("scripts", "load", "--url", tls_url)
    assert status == 0
    assert output.count("\tloaded\t") == 2 * len(all_scripts())  # and each library
    limiter = Limiter(1, 60, backend=SyncRedis.from_url(tls_url))
    assert [limiter.hit("k").allowed for _ in range(2)] == [True, False]
    limiter.backend.client.close()
