"""Every backend agrees with the reference model on random hit sequences.

Hypothesis drives the clock (the limiter's clock option) and the hits. On the
embedded backend the keyspace runs on the same clock, so any times work. A
real server expires keys on its own clock, so for Redis and fakeredis the
sequences use whole seconds and durations that keep every TTL a whole number
of seconds: no key can then expire in real time before the model says so.
"""

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from luathrottle import Decision, LeakyBucket, Limit, Limiter, SimpleRate
from models import FixedWindowModel, LeakyBucketModel

_counter = itertools.count()

ALGORITHMS = {
    "simple_rate": (SimpleRate, FixedWindowModel),
    "leaky_bucket": (LeakyBucket, LeakyBucketModel),
}


@st.composite
def scenarios(draw, whole_seconds: bool):
    size = draw(st.integers(1, 3))
    limits = []
    for _ in range(size):
        max_requests = draw(st.integers(1, 5))
        if whole_seconds:
            duration = max_requests * draw(st.integers(1, 3))
        else:
            duration = draw(st.integers(1, 6))
        limits.append((max_requests, duration))
    limits = list(dict.fromkeys(limits))
    step = (
        st.integers(0, 4).map(lambda s: s * 1_000_000)
        if whole_seconds
        else st.integers(0, 3_000_000)
    )
    ops = draw(
        st.lists(
            st.tuples(step, st.sampled_from(["hit", "hit", "peek"]), st.integers(1, 4)),
            min_size=1,
            max_size=25,
        )
    )
    return limits, ops


def check_agreement(backend, clock, algorithm_name, scenario):
    algorithm, model_type = ALGORITHMS[algorithm_name]
    limits, ops = scenario
    limiter = Limiter(
        [Limit(m, d) for m, d in limits],
        algorithm=algorithm(),
        backend=backend,
        prefix=f"model{next(_counter)}",
        clock=clock,
    )
    model = model_type()
    keys = limiter._call("identity", "peek").keys
    for step, mode, cost in ops:
        clock.advance(step / 1_000_000)
        now = round(clock() * 1_000_000)
        expected = Decision.from_reply(
            limiter.limits, model.call(keys, limits, cost, now, mode == "hit")
        )
        if mode == "hit":
            got = limiter.hit("identity", cost)
        else:
            got = limiter.peek("identity", cost)
        assert got == expected, (step, mode, cost)
        if mode == "hit" and got.allowed:
            for key, (limit, _) in zip(keys, limits, strict=True):
                ttl = ttl_of(backend, key)
                assert 0 < ttl <= model.ttl_ms(key, limit, now)


def ttl_of(backend, key):
    if hasattr(backend, "command"):
        return backend.command("PTTL", key)
    return backend.client.pttl(key)


@pytest.mark.parametrize("algorithm_name", sorted(ALGORITHMS))
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios(whole_seconds=False))
def test_memory_backend_agrees_with_model(algorithm_name, scenario, clock):
    from luathrottle.backends.memory import MemoryBackend

    check_agreement(MemoryBackend(clock=clock), clock, algorithm_name, scenario)


@pytest.mark.parametrize("algorithm_name", sorted(ALGORITHMS))
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios(whole_seconds=True))
def test_every_backend_agrees_with_model(algorithm_name, scenario, sync_backend, clock):
    check_agreement(sync_backend, clock, algorithm_name, scenario)
