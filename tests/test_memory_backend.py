"""The embedded backend: the same Lua, its keyspace, threads and tasks."""

import asyncio
import threading

import pytest

from luathrottle import (
    AsyncLimiter,
    BackendError,
    ConcurrencyLimiter,
    LeakyBucket,
    Limit,
    Limiter,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.backends.memory import MemoryBackend
from luathrottle.scripts import Script


def test_keyspace_commands_behave_as_in_redis(clock):
    backend = MemoryBackend(clock=clock)
    assert backend.command("GET", "k") is False
    backend.command("SET", "k", "v", "PX", 1500)
    assert (backend.command("GET", "k"), backend.command("PTTL", "k")) == ("v", 1500)
    clock.advance(1.5)
    assert backend.command("PTTL", "k") == -2
    backend.command("SET", "k", "v")
    assert backend.command("PTTL", "k") == -1
    assert backend.command("DEL", "k", "missing") == 1
    assert backend.command("TIME") == ["1700000001", "500000"]


def test_a_list_expires_as_other_keys_do(clock):
    """RPUSH only marks a key as a list, but PEXPIRE gives it a time to
    live as Redis does, and PTTL tells it until it is gone."""
    backend = MemoryBackend(clock=clock)
    backend.command("RPUSH", "l", "x")
    assert backend.command("PTTL", "l") == -1
    assert backend.command("PEXPIRE", "l", 1500) == 1
    assert backend.command("PTTL", "l") == 1500
    clock.advance(1.5)
    assert backend.command("PTTL", "l") == -2
    assert backend.command("TYPE", "l") == ["none"]


def test_the_embedded_time_never_goes_back(clock):
    """Calls read the clock before they take turns in the runtime, so one
    may bring an earlier time than the call before it; the keyspace then
    keeps the later time, for TIME and for expiry alike."""
    backend = MemoryBackend(clock=clock)
    backend.command("SET", "k", "v", "PX", 1000)
    clock.advance(2)
    assert backend.command("TIME") == ["1700000002", "0"]
    clock.advance(-1.5)
    assert backend.command("TIME") == ["1700000002", "0"]
    assert backend.command("GET", "k") is False
    clock.advance(1)
    assert backend.command("TIME") == ["1700000002", "0"]
    clock.advance(0.75)
    assert backend.command("TIME") == ["1700000002", "250000"]


def test_unknown_commands_and_script_errors_are_backend_errors():
    backend = MemoryBackend()
    with pytest.raises(BackendError, match="unknown command"):
        backend.command("FLUSHALL")
    broken = Script.from_source(
        "-- luathrottle script: broken\n-- version: 1\nreturn redis.call('NOPE')",
        filename="broken.lua",
    )
    with pytest.raises(BackendError, match="broken"):
        backend.run_script(broken, [], [])


@pytest.mark.parametrize(
    "limits",
    [
        ["1/second"],
        ["1/second", Limit(2, 1, name="two"), Limit(3, 1, name="three")],
    ],
)
def test_expired_keys_are_swept_without_being_read(clock, limits):
    """Each call owes the sweep two keys for each key it names, paid 32 at a
    time. The 200 keys come due together once their second has passed: 60
    calls pay for 136 keys with what the hits left owing (four batches),
    150 calls for more than 200. A 3-limit SimpleRate call names its hash
    three times and writes only that hash, so it owes two keys as a 1-limit
    call does: at two keys per limit, 60 calls would have paid for 360."""
    backend = MemoryBackend(clock=clock)
    limiter = Limiter(limits, backend=backend, clock=clock)
    for index in range(200):
        limiter.hit(f"client-{index}")
    assert backend.command("DBSIZE") == 200
    clock.advance(4)
    for _ in range(60):
        limiter.peek("someone-else")
    assert backend.command("DBSIZE") > 0
    for _ in range(90):
        limiter.peek("someone-else")
    assert backend.command("DBSIZE") == 0


class Recording(MemoryBackend):
    """The embedded backend, noting the ARGV of every script call."""

    def __init__(self, clock) -> None:
        super().__init__(clock=clock)
        self.sent: list[tuple[str, ...]] = []

    def run_script(self, script, keys, args):
        self.sent.append(tuple(args))
        return super().run_script(script, keys, args)

    def run_scripts(self, calls):
        return [self.run_script(*call) for call in calls]


def argv_script(name, body):
    return Script.from_source(
        f"-- luathrottle script: {name}\n-- version: 1\n{body}", filename=f"{name}.lua"
    )


#: Tells whether the ARGV it is handed holds what its KEYS do: {1}, or {0, n}
#: where they first differ (n past the end when ARGV is longer).
ARGV_PROBE = argv_script(
    "argv_probe",
    "for i = 1, math.max(#KEYS, #ARGV) do\n"
    "  if ARGV[i] ~= KEYS[i] then return {0, i} end\n"
    "end\n"
    "return {1}\n",
)
#: Writes to its ARGV, as no script may.
ARGV_WRITER = argv_script("argv_writer", "ARGV[1] = 'written'\nreturn {1}\n")


def test_scripts_leave_the_argv_tables_the_backend_keeps_unchanged(clock):
    """The backend hands a script the ARGV table it keeps for those
    arguments, not a copy, so a script that wrote to its ARGV would change
    its next call's. Every script, in every mode, leaves them as they were:
    a probe called after them with the same arguments finds each of them."""
    backend = Recording(clock)
    limits = ["2/second", "3/minute", "4/hour"]
    for algorithm in (SimpleRate(), LeakyBucket(), TokenBucket(), SlidingWindow()):
        limiter = Limiter(limits, algorithm=algorithm, backend=backend)
        for _ in range(3):
            limiter.hit("someone")
        limiter.hit("someone", cost=2)
        limiter.hit("someone", cost=9)
        limiter.peek("someone")
        limiter.reset("someone")
    leases = ConcurrencyLimiter(1, lease=30, backend=backend)
    with leases.acquire("someone") as lease:
        assert lease.renew()
        assert not leases.acquire("someone").allowed
    sent = list(dict.fromkeys(backend.sent))
    assert len(sent) > 10
    backend.run_script(ARGV_PROBE, ["warm"], ["warm"])  # compiled, with its own
    for args in sent:
        assert backend.run_script(ARGV_PROBE, args, args) == [1], args
    # The probe sees what a script leaves in the table of its arguments.
    backend.run_script(ARGV_WRITER, ["warm"], ["warm"])
    backend.run_script(ARGV_PROBE, ["k"], ["k"])
    backend.run_script(ARGV_WRITER, ["k"], ["k"])
    assert backend.run_script(ARGV_PROBE, ["k"], ["k"]) == [0, 1]


def test_threads_admit_exactly_the_limit():
    backend = MemoryBackend()
    limiter = Limiter(100, 3600, algorithm=LeakyBucket(), backend=backend)
    admitted = []

    def worker():
        admitted.extend(limiter.hit("shared").allowed for _ in range(50))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert admitted.count(True) == 100
    assert len(admitted) == 400


async def test_tasks_admit_exactly_the_limit():
    limiter = AsyncLimiter(30, 3600, backend=MemoryBackend())
    results = await asyncio.gather(*(limiter.hit("shared") for _ in range(100)))
    assert sum(decision.allowed for decision in results) == 30


def test_backends_do_not_share_state():
    one = Limiter(1, 60, backend=MemoryBackend())
    two = Limiter(1, 60, backend=MemoryBackend())
    assert one.hit("k").allowed
    assert two.hit("k").allowed
