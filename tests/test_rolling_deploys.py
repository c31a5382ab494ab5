"""Two builds on one redis-server, as during a rolling deploy.

The other build is a copy of ``lua/`` with one script changed, by a comment
or by its ``-- version:``, read by the package's own ``Script.from_source``:
its libraries are what that build would load. Both builds count on one
state, exactly, and neither evicts the other's functions.
"""

import io
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

import luathrottle.concurrency
from luathrottle import ConcurrencyLimiter, LeakyBucket, Limiter, SimpleRate
from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.backends.redis import SyncRedis
from luathrottle.cli import main
from luathrottle.scripts import Script, all_scripts, get_script
from servers import RedisServer

ROOT = Path(__file__).resolve().parents[1]


def comment_changed(source: str) -> str:
    changed = source.replace("\n--\n", "\n-- (as another build has it)\n", 1)
    assert changed != source
    return changed


def version_bumped(source: str) -> str:
    def bump(match: re.Match[str]) -> str:
        return f"-- version: {int(match[1]) + 1}\n"

    changed = re.sub(r"-- version: (\d+)\n", bump, source, count=1)
    assert changed != source
    return changed


CHANGES = {"comment": comment_changed, "version": version_bumped}


def other_build(
    tmp_path: Path, change: Callable[[str], str], *names: str
) -> dict[str, Script]:
    """Every script of a build made from a copy of ``lua/`` in which the
    scripts ``names`` are changed by ``change``."""
    directory = tmp_path / "other-build"
    shutil.copytree(ROOT / "lua", directory)
    for name in names:
        path = directory / f"{name}.lua"
        path.write_text(change(path.read_text()))
    return {
        path.stem: Script.from_source(path.read_text(), filename=path.name)
        for path in sorted(directory.glob("*.lua"))
    }


def built_with(algorithm: type[BaseThrottleAlgorithm], script: Script):
    """``algorithm`` as the other build has it: running that build's script."""

    class OtherBuild(algorithm):  # type: ignore[misc, valid-type]
        @property
        def script(self) -> Script:
            return script

    return OtherBuild()


@pytest.fixture
def fresh(server: RedisServer):
    """A redis-server of the test's own: no library, no command counted."""
    client: redis.Redis[bytes] = redis.Redis.from_url(server.url)
    yield server, client
    client.close()


def fields(flat: list[object]) -> dict[object, object]:
    """One entry of a FUNCTION LIST reply, which RESP2 gives as a flat list."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def functions(client: "redis.Redis[bytes]") -> list[str]:
    """Every function on the server, of any library."""
    return sorted(
        fields(function)[b"name"].decode()
        for library in client.function_list()
        for function in fields(library)[b"functions"]
    )


def libraries(client: "redis.Redis[bytes]") -> list[str]:
    """Every library on the server."""
    return sorted(
        fields(entry)[b"library_name"].decode() for entry in client.function_list()
    )


def both_builds(ours: Script, theirs: Script) -> list[str]:
    """The functions of both builds' libraries of one script, which differ."""
    names = {ours.function, ours.function_ro, theirs.function, theirs.function_ro}
    assert len(names) == 4
    return sorted(names)


def library_loads(client: "redis.Redis[bytes]") -> int:
    """FUNCTION LOAD calls the server took, those that failed included."""
    stats = client.info("commandstats").get("cmdstat_function|load", {})
    return int(stats.get("calls", 0))


ALGORITHMS = [(SimpleRate, "fixed_window"), (LeakyBucket, "leaky_bucket")]


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize(
    ("algorithm", "name"), ALGORITHMS, ids=[name for _, name in ALGORITHMS]
)
def test_two_builds_admit_the_limit_exactly_on_one_identity(
    fresh, tmp_path, change, algorithm, name
):
    _, client = fresh
    ours = get_script(name)
    theirs = other_build(tmp_path, CHANGES[change], name)[name]
    builds = [
        Limiter(5, 3600, backend=SyncRedis(client), algorithm=algorithm()),
        Limiter(
            5,
            3600,
            backend=SyncRedis(client),
            algorithm=built_with(algorithm, theirs),
        ),
    ]
    assert (builds[0].script, builds[1].script) == (ours, theirs)
    admitted = [0, 0]
    for hit in range(40):
        build = hit % 2
        admitted[build] += builds[build].hit("identity").allowed
    # Both builds took turns, and five were admitted between them, not ten.
    assert sum(admitted) == 5
    assert min(admitted) >= 2
    assert functions(client) == both_builds(ours, theirs)
    # One load per build, each at its first call; none since.
    assert library_loads(client) == 2


@pytest.mark.parametrize("change", CHANGES)
def test_two_builds_hold_max_in_flight_exactly(fresh, tmp_path, monkeypatch, change):
    _, client = fresh
    ours = get_script("concurrency")
    theirs = other_build(tmp_path, CHANGES[change], "concurrency")["concurrency"]
    limiter = ConcurrencyLimiter(3, lease=3600, backend=SyncRedis(client))
    # The other build's limiter, built while the registry hands out its script.
    monkeypatch.setattr(luathrottle.concurrency, "get_script", lambda _: theirs)
    other = ConcurrencyLimiter(3, lease=3600, backend=SyncRedis(client))
    monkeypatch.undo()
    assert (limiter.script, other.script) == (ours, theirs)
    builds = [limiter, other]
    for _ in range(2):
        leases = [builds[attempt % 2].acquire("job") for attempt in range(12)]
        held = [lease for lease in leases if lease.allowed]
        assert len(held) == 3
        assert {lease.key for lease in leases} == {limiter.state_key("job")}
        # Each build releases its own leases, and frees the slots for both.
        assert all(lease.release() for lease in held)
    assert functions(client) == both_builds(ours, theirs)
    assert library_loads(client) == 2


# The library today's release loads: every script in one library named
# luathrottle, as functions lt_<name>_v<version>_<sha8>.
def todays_library() -> str:
    parts = ["#!lua name=luathrottle\n"]
    for script in all_scripts():
        function = f"lt_{script.name}_v{script.version}_{script.sha[:8]}"
        parts.append(f"redis.register_function('{function}', function() end)\n")
        parts.append(f"redis.register_function('{function}_ro', function() end)\n")
    return "".join(parts)


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_prune_leaves_only_this_builds_libraries(fresh, tmp_path):
    server, client = fresh
    client.function_load(todays_library())
    client.function_load(
        "#!lua name=theirs\nredis.register_function('x', function() end)"
    )
    other = other_build(
        tmp_path, version_bumped, *(script.name for script in all_scripts())
    )
    backend = SyncRedis(client)
    for script in other.values():
        backend.load_script(script)
    assert run_cli("scripts", "load", "--url", server.url)[0] == 0
    ours = sorted(script.library.name for script in all_scripts())
    older = sorted(script.library.name for script in other.values())
    # Today's library, the other build's and this one's all side by side.
    assert libraries(client) == sorted(["luathrottle", "theirs", *ours, *older])

    status, output = run_cli("scripts", "prune", "--url", server.url)
    assert status == 0
    assert output.splitlines() == [
        f"127.0.0.1:{server.port}\tdeleted\tlibrary\t{name}"
        for name in ["luathrottle", *older]
    ]
    # A library that is not luathrottle's stays.
    assert libraries(client) == sorted(["theirs", *ours])
    assert run_cli("scripts", "check", "--url", server.url)[0] == 0
    assert run_cli("scripts", "prune", "--url", server.url) == (0, "")
