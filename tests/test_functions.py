"""Redis Functions: one library per script, FCALL and FCALL_RO, and the
fallbacks to EVALSHA, on real redis-servers."""

import re
import shutil
import threading
from pathlib import Path

import pytest
import redis
import redis.asyncio

from luathrottle import AsyncLimiter, LeakyBucket, Limiter, SimpleRate
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.exceptions import BackendError
from luathrottle.scripts import Script, all_scripts, get_script
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
    """The functions of every luathrottle library on the server (RESP2's
    flat lists)."""
    names = []
    for entry in client.function_list(library="luathrottle*"):
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


@pytest.mark.parametrize("script", all_scripts(), ids=lambda s: s.name)
def test_each_script_is_a_library_of_its_own_named_by_content(script):
    lib = script.library
    assert re.fullmatch(rf"luathrottle_{script.key_tag}_[0-9a-f]{{12}}", lib.name)
    assert lib.code.startswith(f"#!lua name={lib.name}\n")
    assert script.source.rstrip("\n") in lib.code
    assert lib.functions == (script.function, script.function_ro)
    assert (script.function, script.function_ro) == (lib.name, f"{lib.name}_ro")
    # Today's release registered lt_<name>_v<version>_<sha8> in one library
    # called luathrottle: no name is shared, so both load on one server.
    assert not lib.name.startswith("lt_")


def test_a_library_name_changes_with_any_change_to_its_code():
    script = get_script("leaky_bucket")
    comment = script.source.replace("\n--\n", "\n-- another build\n", 1)
    other = Script.from_source(comment, filename="leaky_bucket.lua")
    assert other.key_tag == script.key_tag
    assert other.library.name != script.library.name
    again = Script.from_source(script.source, filename="leaky_bucket.lua")
    assert again.library == script.library


def refused_loads(client: "redis.Redis[bytes]") -> int:
    """FUNCTION LOAD calls the server refused or failed since the last
    CONFIG RESETSTAT."""
    stats = client.info("commandstats").get("cmdstat_function|load", {})
    return int(stats.get("rejected_calls", 0)) + int(stats.get("failed_calls", 0))


#: Each way FUNCTION LOAD fails, caused on a server of the test's own, and
#: what loading a script then does: go on with functions, go on without
#: them (EVALSHA from then on), or raise.
LOAD_FAILURES = {
    # The library is there already: named by its content, it is this code.
    "present": "functions",
    # Out of memory: calls that need the library run by EVAL meanwhile.
    "full": "functions",
    # The ACL forbids FUNCTION, or the server has no such command.
    "noperm": "evalsha",
    "unknown": "evalsha",
    # Another library has registered a function of this name: not ours.
    "function-exists": "raises",
    "connection": "raises",
}


@pytest.mark.parametrize(
    ("case", "outcome"), LOAD_FAILURES.items(), ids=list(LOAD_FAILURES)
)
def test_what_a_failed_function_load_means(tmp_path, case, outcome):
    script = SimpleRate().script
    renamed = ("--rename-command", "FUNCTION", "") if case == "unknown" else ()
    binary = shutil.which("redis-server") or "redis-server"
    server = RedisServer(binary, str(tmp_path), *renamed)
    server.start()
    admin: redis.Redis[bytes] = redis.Redis.from_url(server.url)
    client = admin
    try:
        if case == "present":
            admin.function_load(script.library.code)
        elif case == "full":
            admin.config_set("maxmemory", 1)
        elif case == "noperm":
            admin.acl_setuser(
                "limited",
                enabled=True,
                nopass=True,
                keys=["~*"],
                commands=["+@all", "-function"],
            )
            client = redis.Redis.from_url(server.url, username="limited", password="x")
        elif case == "function-exists":
            admin.function_load(
                "#!lua name=squatter\n"
                f"redis.register_function('{script.function}', function() return 1 end)"
            )
        backend = SyncRedis(client)
        if case == "connection":
            server.stop()
        else:
            admin.config_resetstat()

        if outcome == "raises":
            with pytest.raises(BackendError, match=f"loading {script.name}: "):
                backend.load_script(script)
        else:
            backend.load_script(script)
        assert backend.uses_functions is (outcome != "evalsha")
        if case in ("present", "full", "noperm", "function-exists"):
            # The load was sent, and refused: nothing above skipped it.
            assert refused_loads(admin) == 1
        if case == "function-exists":
            assert "squatter" in str(admin.function_list())
        if outcome == "evalsha":
            assert admin.script_exists(script.sha) == [True]
        if outcome != "raises":
            # The server decides, the library missing or not.
            assert Limiter(2, 60, backend=backend).peek("k").remaining == 2
    finally:
        if client is not admin:
            client.close()
        admin.close()
        server.stop()


def test_a_fresh_server_gets_the_library_at_the_first_call(fresh):
    _, client = fresh
    assert client.function_list() == []
    limiter = Limiter(2, 60, backend=SyncRedis(client))
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]
    # Only the library of the script that was called.
    assert function_names(client) == list(limiter.script.library.functions)
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
    assert function_names(client) == list(limiter.script.library.functions)


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
    assert function_names(client) == list(LeakyBucket().script.library.functions)
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
