"""The embedded backend on LuaJIT gives what it gives on Lua 5.1.

``MemoryBackend`` runs the scripts on LuaJIT, which runs Lua 5.1 code but
formats and rounds numbers its own way in places. Here the same random
calls go to a LuaJIT backend and a Lua 5.1 one on one clock, and every
decision, every stored state and every TTL must be equal. The agreement
tests (``test_model_agreement``, ``test_bounds``) run both runtimes against
the models too. Also here: how the keyspace hands a reply to Python.
"""

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import Clock
from luathrottle import (
    ConcurrencyLimiter,
    LeakyBucket,
    Limit,
    Limiter,
    ScriptError,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.backends.memory import MemoryBackend
from luathrottle.scripts import Script
from runtimes import Lua51MemoryBackend
from states import limiter_keys, read_state, state_ttl

SIZES = [1, 2, 9, 10, 99, 100_000, 10**6, 10**9, 2**40]
IDENTITIES = ("a", "b")


@st.composite
def limiter_setups(draw):
    kind = draw(st.sampled_from(["simple", "leaky", "token", "sliding"]))
    limits = draw(
        st.lists(
            st.tuples(
                st.one_of(st.integers(1, 5), st.sampled_from(SIZES)),
                st.sampled_from([1, 5, 60, 3600, 86_400, 10**6]),
            ),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    burst = draw(st.one_of(st.none(), st.integers(1, 6), st.sampled_from(SIZES)))
    algorithm = {
        "simple": SimpleRate(),
        "leaky": LeakyBucket(),
        "token": TokenBucket(burst=burst),
        "sliding": SlidingWindow(),
    }[kind]
    # Named, so that limits of one window count apart.
    parsed = [Limit(m, d, name=f"limit {i}") for i, (m, d) in enumerate(limits)]
    try:
        algorithm.check_limits(parsed)
    except ValueError:
        assume(False)
    return algorithm, parsed


operations = st.lists(
    st.tuples(
        st.sampled_from(["hit", "hit", "peek", "reset"]),
        st.sampled_from(IDENTITIES),
        st.one_of(st.integers(1, 4), st.sampled_from([s - 1 for s in SIZES[1:]])),
        st.one_of(st.integers(0, 3_000_000), st.integers(0, 2 * 86_400 * 10**6)),
    ),
    min_size=1,
    max_size=30,
)


def stored(backend, keys):
    return [(read_state(backend, key), state_ttl(backend, key)) for key in keys]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(setup=limiter_setups(), ops=operations, later=st.integers(0, 4 * 10**8))
def test_luajit_and_lua51_decide_and_store_alike(setup, ops, later):
    algorithm, limits = setup
    # Up to 2036: window indexes and bucket times of every width.
    clock = Clock(1_700_000_000.0 + later)
    limiters = [
        Limiter(limits, algorithm=algorithm, backend=backend(clock=clock), clock=clock)
        for backend in (MemoryBackend, Lua51MemoryBackend)
    ]
    jit, lua51 = limiters
    for operation, identity, cost, step_us in ops:
        clock.advance(step_us / 1_000_000)
        if operation == "reset":
            for limiter in limiters:
                limiter.reset(identity)
        else:
            decisions = [
                getattr(limiter, operation)(identity, cost) for limiter in limiters
            ]
            assert decisions[0] == decisions[1], (operation, identity, cost)
        for name in IDENTITIES:
            keys = limiter_keys(jit, name)
            assert stored(jit.backend, keys) == stored(lua51.backend, keys)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    max_in_flight=st.integers(1, 4),
    lease=st.integers(1, 5),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["acquire", "acquire", "release", "renew"]),
            st.integers(0, 7),
            st.integers(0, 3_000_000),
        ),
        max_size=25,
    ),
)
def test_luajit_and_lua51_hold_leases_alike(max_in_flight, lease, ops):
    clock = Clock()
    limiters = [
        ConcurrencyLimiter(max_in_flight, lease=lease, backend=backend(clock=clock))
        for backend in (MemoryBackend, Lua51MemoryBackend)
    ]
    held: list[list] = [[], []]
    for operation, pick, step_us in ops:
        clock.advance(step_us / 1_000_000)
        if operation == "acquire":
            leases = [limiter.acquire("k") for limiter in limiters]
            got = [(x.allowed, x.in_flight, x.retry_after, x.reason) for x in leases]
            for mine, one in zip(held, leases, strict=True):
                mine.append(one)
        elif held[0]:
            index = pick % len(held[0])
            got = [getattr(mine[index], operation)() for mine in held]
        else:
            continue
        assert got[0] == got[1], operation
        cards = [
            limiter.backend.command("ZCARD", limiter.state_key("k"))
            for limiter in limiters
        ]
        assert cards[0] == cards[1]


def script(body: str) -> Script:
    return Script.from_source(
        f"-- luathrottle script: probe\n-- version: 1\n{body}", filename="probe.lua"
    )


def test_the_embedded_backend_runs_luajit():
    probe = script("return {jit and 1 or 0}")
    assert MemoryBackend().run_script(probe, [], []) == [1]
    assert Lua51MemoryBackend().run_script(probe, [], []) == [0]


@pytest.mark.parametrize("backend", [MemoryBackend, Lua51MemoryBackend])
def test_reply_fields_become_integers_as_redis_makes_them(backend):
    probe = script("return {3.7, -3.7, '12', 2^53, 0}")
    assert backend().run_script(probe, [], []) == [3, -3, 12, 2**53, 0]
    assert backend().run_script(script("return {7}"), [], []) == [7]
    assert backend().run_script(script("return {}"), [], []) == []


@pytest.mark.parametrize("backend", [MemoryBackend, Lua51MemoryBackend])
def test_a_failing_script_names_the_line_of_its_file(backend):
    """The embedded runtimes run a script as the body of a function of KEYS
    and ARGV that starts on its first line, as Redis's function library
    does, so an error names the script's own line."""
    probe = script("local missing = KEYS[2]\n\nreturn {missing + 1}")
    with pytest.raises(ScriptError, match=r"^probe: probe:5: "):
        backend().run_script(probe, ["k"], [])


@pytest.mark.parametrize("body", ["return {1, 'abc'}", "return {1/0}", "return {2^63}"])
def test_a_reply_field_that_is_no_integer_is_a_script_error(body):
    with pytest.raises(ScriptError, match=r"probe: .*field"):
        MemoryBackend().run_script(script(body), [], [])


@pytest.mark.parametrize("args", [("a", "2"), ["a", "2"]])
def test_each_call_gets_its_arguments_and_a_keys_table_of_its_own(args):
    """KEYS is new at every call, so what a script adds to it is gone at the
    next; ARGV is the table the backend keeps for these arguments, which no
    script may change (see test_memory_backend.py)."""
    probe = script(
        "local seen = {#ARGV, ARGV[1] == 'a' and 1 or 0, #KEYS}\n"
        "KEYS[2] = 'd'\n"
        "return seen"
    )
    backend = MemoryBackend()
    for _ in range(3):
        assert backend.run_script(probe, ("k",), args) == [2, 1, 1]
