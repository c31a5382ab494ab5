"""Each adapter imports its framework only when it is imported itself, and
names the extra to install when the framework is missing."""

import importlib
import importlib.util
import subprocess
import sys

import pytest

ADAPTERS = [
    ("luathrottle.drf", "rest_framework", "luathrottle[drf]"),
    ("luathrottle.dmr", "dmr", "luathrottle[dmr]"),
    ("luathrottle.fastapi", "fastapi", "luathrottle[asgi]"),
    ("luathrottle.flask", "flask", "luathrottle[flask]"),
    ("luathrottle.prometheus", "prometheus_client", "luathrottle[prometheus]"),
    ("luathrottle.otel", "opentelemetry", "luathrottle[otel]"),
]
FRAMEWORKS = ("rest_framework", "dmr", "fastapi", "starlette", "flask")


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("module", "framework", "extra"), ADAPTERS)
def test_a_missing_framework_names_the_extra(module, framework, extra):
    # A None entry in sys.modules makes that import fail, as if not installed.
    result = run(
        "import sys\n"
        f"sys.modules[{framework!r}] = None\n"
        "try:\n"
        f"    import {module}\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert f"pip install '{extra}'" in result.stdout


def test_the_core_and_the_middleware_import_no_framework():
    result = run(
        "import sys\n"
        "import luathrottle, luathrottle.asgi, luathrottle.backends.redis\n"
        f"print([name for name in {FRAMEWORKS!r} if name in sys.modules])\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


#: luathrottle.dmr only where dmr is installed: ``nox -s lowest`` runs on a
#: Django that dmr does not accept (tests/conftest.py).
ADAPTERS = [
    "luathrottle.drf",
    *(["luathrottle.dmr"] if importlib.util.find_spec("dmr") else []),
    "luathrottle.asgi",
    "luathrottle.fastapi",
    "luathrottle.flask",
]


@pytest.mark.parametrize("module", ADAPTERS)
def test_every_exported_name_exists(module):
    imported = importlib.import_module(module)
    missing = [name for name in imported.__all__ if not hasattr(imported, name)]
    assert missing == []


def test_the_redis_backends_work_without_valkey(redis_url):
    # valkey-py is optional: hidden, redis-py's clients still decide, and
    # the error for a wrong client still names valkey-py's classes.
    result = run(
        "import sys\n"
        "sys.modules['valkey'] = None\n"
        "import asyncio, redis, redis.asyncio\n"
        "from luathrottle import AsyncLimiter, Limiter\n"
        "from luathrottle.backends.redis import AsyncRedis, SyncRedis\n"
        f"client = redis.Redis.from_url({redis_url!r})\n"
        "limiter = Limiter(2, 60, backend=SyncRedis(client), prefix='novalkey')\n"
        "limiter.reset('k')\n"
        "print([limiter.hit('k').allowed for _ in range(3)])\n"
        "async def main():\n"
        f"    client = redis.asyncio.Redis.from_url({redis_url!r})\n"
        "    backend = AsyncRedis(client)\n"
        "    limiter = AsyncLimiter(1, 60, backend=backend, prefix='novalkey-a')\n"
        "    await limiter.reset('k')\n"
        "    print([(await limiter.hit('k')).allowed for _ in range(2)])\n"
        "    await client.aclose()\n"
        "asyncio.run(main())\n"
        "try:\n"
        "    SyncRedis(object())\n"
        "except TypeError as exc:\n"
        "    print(exc)\n"
        "try:\n"
        "    SyncRedis.from_url('valkey://localhost:6379/0')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "print('valkey' in sys.modules and sys.modules['valkey'] is not None)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[True, True, False]",
        "[True, False]",
        "client must be a redis.Redis, redis.cluster.RedisCluster, valkey.Valkey "
        "or valkey.cluster.ValkeyCluster, got builtins.object",
        "url 'valkey://localhost:6379/0' needs valkey-py: "
        "pip install 'luathrottle[valkey]'",
        "False",
    ]
