"""Redis Functions: the ``luathrottle`` library, FCALL and FCALL_RO, and the
fallbacks to EVALSHA, on real redis-servers."""

import shutil
import threading
from pathlib import Path

import pytest
import redis
import redis.asyncio

from luathrottle import AsyncLimiter, LeakyBucket, Limiter
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.exceptions import BackendError
from luathrottle.scripts import LIBRARY_NAME, all_scripts, library
from servers import RedisServer
from states import script_call

SCRIPT_COMMANDS = ("fcall", "fcall_ro", "evalsha", "eval", "function|load")


def script_commands(client: "redis.Redis[bytes]") -> dict[str, int]:
    """Calls of each script command since the last CONFIG RESETSTAT."""
    stats = client.info("commandstats")
    found = {
        name: stats.get(f"cmdstat_{name}", {}).get("calls", 0)
        for name in SCRIPT_COMMANDS
    }
    return {name: calls for name, calls in found.items() if calls}


def function_names(client: "redis.Redis[bytes]") -> list[str]:
    """The functions of the library on the server (RESP2's flat lists)."""
    names = []
    for entry in client.function_list(library=LIBRARY_NAME):
        fields = dict(zip(entry[::2], entry[1::2], strict=True))
        for function in fields[b"functions"]:
            fn = dict(zip(function[::2], function[1::2], strict=True))
            names.append(fn[b"name"].decode())
    return sorted(names)


@pytest.fixture
def fresh(tmp_path: Path):
    """A redis-server of the test's own, which has never seen the library."""
    server = RedisServer(shutil.which("redis-server") or "redis-server", str(tmp_path))
    server.start()
    client: redis.Redis[bytes] = redis.Redis.from_url(server.url)
    yield server, client
    client.close()
    server.stop()


def test_the_library_is_generated_from_every_script():
    lib = library()
    assert lib.name == LIBRARY_NAME == "luathrottle"
    assert lib.code.startswith("#!lua name=luathrottle\n")
    for script in all_scripts():
        assert script.source.rstrip("\n") in lib.code
        assert script.function == (
            f"lt_{script.name}_v{script.version}_{script.sha[:8]}"
        )
        assert {script.function, script.function_ro} <= set(lib.functions)


def test_a_fresh_server_gets_the_library_at_the_first_call(fresh):
    _, client = fresh
    assert client.function_list() == []
    limiter = Limiter(2, 60, backend=SyncRedis(client))
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]
    assert function_names(client) == list(library().functions)
    # The first FCALL ran nothing, the EVAL after the load counted once.
    client.config_resetstat()
    assert limiter.hit("other").remaining == 1
    assert script_commands(client) == {"fcall": 1}


def test_peeks_go_through_fcall_ro(fresh):
    _, client = fresh
    limiter = Limiter(2, 60, backend=SyncRedis(client))
    limiter.hit("k")
    client.config_resetstat()
    assert limiter.peek("k").remaining == 1
    assert limiter.peek("k", cost=2).allowed is False
    assert script_commands(client) == {"fcall_ro": 2}
    # The read-only twin refuses to write, rather than trying to.
    ro = limiter.script.function_ro
    with pytest.raises(redis.ResponseError, match="only peeks"):
        client.fcall_ro(ro, 1, "lt:x", "hit", "1", "", "2", "60")


def test_script_flush_costs_nothing_with_functions(fresh):
    _, client = fresh
    limiter = Limiter(5, 60, backend=SyncRedis(client), algorithm=LeakyBucket())
    limiter.hit("k")
    client.script_flush()
    client.config_resetstat()
    assert limiter.hit("k").remaining == 3
    assert script_commands(client) == {"fcall": 1}


def test_function_flush_under_traffic_reaches_no_caller(fresh):
    _, client = fresh
    limiter = Limiter(10_000, 3600, backend=SyncRedis(client))
    errors: list[BackendError] = []

    def traffic() -> None:
        for _ in range(300):
            try:
                limiter.hit("k")
            except BackendError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for thread in threads:
        thread.start()
    for _ in range(20):
        client.function_flush()
        client.script_flush()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    # Nothing counted twice, nothing lost.
    assert limiter.peek("k").remaining == 10_000 - 900
    assert limiter.backend.uses_functions


def test_a_pipeline_reloads_the_library_and_counts_once(fresh):
    _, client = fresh
    backend = SyncRedis(client)
    limiter = Limiter(2, 60, backend=backend)
    calls = [script_call(limiter, key) for key in ("a", "b", "c")]
    assert [reply[2] for reply in backend.run_scripts(calls)] == [1, 1, 1]
    client.function_flush()
    assert [reply[2] for reply in backend.run_scripts(calls)] == [0, 0, 0]
    assert client.function_list(library=LIBRARY_NAME) != []


# -function takes FUNCTION LOAD away; -fcall -fcall_ro takes the calls.
ACL_RULES = [("-function",), ("-fcall", "-fcall_ro")]


@pytest.mark.parametrize("rules", ACL_RULES, ids=" ".join)
def test_a_user_the_acl_forbids_functions_falls_back_to_evalsha(fresh, rules):
    server, admin = fresh
    admin.acl_setuser(
        "limited", enabled=True, nopass=True, keys=["~*"], commands=["+@all", *rules]
    )
    client: redis.Redis[bytes] = redis.Redis.from_url(
        server.url, username="limited", password="x"
    )
    backend = SyncRedis(client)
    limiter = Limiter(2, 60, backend=backend)
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]
    assert not backend.uses_functions
    admin.config_resetstat()
    assert limiter.peek("k").remaining == 0
    limiter.hit("j")
    # The probe is not repeated: the backend remembers EVALSHA.
    assert script_commands(admin) == {"evalsha": 2}
    client.close()


def test_a_server_without_functions_falls_back_to_evalsha(tmp_path):
    # Renaming FCALL away leaves a server that answers "unknown command",
    # as Redis 6 does.
    server = RedisServer(
        shutil.which("redis-server") or "redis-server",
        str(tmp_path),
        *("--rename-command", "FCALL", ""),
    )
    server.start()
    client: redis.Redis[bytes] = redis.Redis.from_url(server.url)
    try:
        backend = SyncRedis(client)
        limiter = Limiter(2, 60, backend=backend)
        calls = [script_call(limiter, key) for key in ("a", "b")]
        assert [reply[2] for reply in backend.run_scripts(calls)] == [1, 1]
        assert not backend.uses_functions
        assert [limiter.hit("a").allowed for _ in range(2)] == [True, False]
    finally:
        client.close()
        server.stop()


def test_functions_false_forces_evalsha(fresh):
    _, client = fresh
    backend = SyncRedis(client, functions=False)
    limiter = Limiter(2, 60, backend=backend)
    limiter.hit("k")
    client.config_resetstat()
    limiter.hit("k")
    limiter.peek("k")
    assert script_commands(client) == {"evalsha": 2}
    assert client.function_list() == []
    with pytest.raises(TypeError, match="functions must be a bool"):
        SyncRedis(client, functions="yes")  # type: ignore[arg-type]


def test_initialize_algorithm_loads_the_library(fresh):
    _, client = fresh
    SyncRedis(client).initialize_algorithm(LeakyBucket())
    assert client.function_list(library=LIBRARY_NAME) != []
    assert client.script_exists(LeakyBucket().script.sha) == [False]


async def test_async_function_flush_and_acl_fallback(fresh):
    server, admin = fresh
    client = redis.asyncio.Redis.from_url(server.url)
    limiter = AsyncLimiter(3, 60, backend=AsyncRedis(client))
    assert (await limiter.hit("k")).remaining == 2
    admin.function_flush()
    assert (await limiter.hit("k")).remaining == 1
    admin.config_resetstat()
    assert (await limiter.peek("k")).remaining == 1
    assert script_commands(admin) == {"fcall_ro": 1}
    await client.aclose()

    admin.function_flush()
    admin.acl_setuser(
        "limited",
        enabled=True,
        nopass=True,
        keys=["~*"],
        commands=["+@all", "-function"],
    )
    limited = redis.asyncio.Redis.from_url(server.url, username="limited", password="x")
    backend = AsyncRedis(limited)
    limiter = AsyncLimiter(3, 60, backend=backend)
    assert (await limiter.hit("k")).remaining == 0
    assert not backend.uses_functions
    await backend.aload_script(limiter.script)
    assert admin.script_exists(limiter.script.sha) == [True]
    await limited.aclose()
