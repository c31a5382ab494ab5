"""Penalties agree with a reference model under hypothesis (issue #25,
item 2): random hits, peeks and waits on the embedded backend and a real
Redis, limits with and without penalties, both ways of counting, against
each algorithm's plain-Python model (``models.py``) with a penalty box
around it."""

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from luathrottle import Decision, Limit, Limiter
from luathrottle.backends.redis import SyncRedis
from runtimes import EMBEDDED
from test_model_agreement import ALGORITHMS


@dataclass
class PenaltyBox:
    """A model with penalties: ``penalties`` holds each limit's in
    microseconds (0 for none), ``ends`` when each key's penalty ends.

    A limit with a penalty that denies a hit starts one; while it runs, the
    limit denies every hit (a cost above the limit still answers -1), with
    remaining 0 and retry_after and reset_after at least the penalty left,
    and counts nothing. Denials during it never lengthen it.
    """

    inner: Any
    penalties: list[int]
    ends: dict[str, int] = field(default_factory=dict)

    def call(self, keys, limits, cost, now, consume, each=False):
        # The limits' own judgement, before anything is counted.
        judged = self.inner.call(keys, limits, cost, now, False)
        penalised: dict[int, int] = {}
        for i, (key, penalty) in enumerate(zip(keys, self.penalties, strict=True)):
            status = judged[5 * i]
            if not penalty or status == -1:
                continue
            end = self.ends.get(key, 0)
            if end > now:
                penalised[i] = end
            elif consume and status == 0:
                penalised[i] = self.ends[key] = now + penalty
        if not consume:
            reply = judged
        elif each:
            # Each limit counts for itself: those in the box count nothing.
            free = [i for i in range(len(keys)) if i not in penalised]
            counted = self.inner.call(
                [keys[i] for i in free],
                [limits[i] for i in free],
                cost,
                now,
                True,
                True,
            )
            reply = list(judged)
            for j, i in enumerate(free):
                reply[5 * i : 5 * i + 5] = counted[5 * j : 5 * j + 5]
        elif penalised:
            reply = judged
        else:
            reply = self.inner.call(keys, limits, cost, now, True)
        reply = list(reply)
        for i, end in penalised.items():
            left = end - now
            reply[5 * i] = 0
            reply[5 * i + 2] = 0
            reply[5 * i + 3] = max(reply[5 * i + 3], left)
            reply[5 * i + 4] = max(reply[5 * i + 4], left)
        return reply


@st.composite
def scenarios(draw, whole_seconds=False):
    """Limits (max_requests, duration, penalty in µs), steps in µs, costs
    and a burst. On a real server, which expires keys on its own clock,
    every step, penalty and TTL is a whole number of seconds (durations
    are multiples of max_requests), so that no key expires in real time
    before the model says so (as in ``test_model_agreement.py``)."""
    second = 1_000_000
    limits = []
    for _ in range(draw(st.integers(1, 3))):
        max_requests = draw(st.integers(1, 4))
        if whole_seconds:
            duration = max_requests * draw(st.integers(1, 3))
            penalty = draw(st.integers(0, 12)) * second
        else:
            duration = draw(st.integers(1, 6))
            penalty = draw(st.one_of(st.just(0), st.integers(1, 12 * second)))
        limits.append((max_requests, duration, penalty))
    limits = list({limit[:2]: limit for limit in limits}.values())
    step = (
        st.integers(0, 4).map(lambda s: s * second)
        if whole_seconds
        else st.integers(0, 4 * second)
    )
    ops = draw(
        st.lists(
            st.tuples(step, st.sampled_from(["hit", "hit", "peek"]), st.integers(1, 3)),
            min_size=1,
            max_size=30,
        )
    )
    burst = draw(st.one_of(st.none(), st.integers(1, 5)))
    return limits, ops, burst


COUNTINGS = st.sampled_from(["all_or_nothing", "each"])


def check_agreement(backend, clock, algorithm_name, scenario, counting):
    limits, ops, burst = scenario
    algorithm, model_type = ALGORITHMS[algorithm_name]
    limiter = Limiter(
        [
            Limit(m, d, name=f"limit {i}", penalty=p / 1_000_000 if p else None)
            for i, (m, d, p) in enumerate(limits)
        ],
        algorithm=algorithm(burst),
        backend=backend,
        prefix=uuid.uuid4().hex[:12],
        clock=clock,
        counting=counting,
    )
    model = PenaltyBox(model_type(burst), [p for _, _, p in limits])
    keys = limiter.state_keys("identity")
    plain = [(m, d) for m, d, _ in limits]
    each = counting == "each"
    for step, mode, cost in ops:
        clock.advance(step / 1_000_000)
        now = round(clock() * 1_000_000)
        reply = model.call(keys, plain, cost, now, mode == "hit", each)
        expected = Decision.from_reply(limiter.limits, reply)
        if mode == "hit":
            got = limiter.hit("identity", cost)
        else:
            got = limiter.peek("identity", cost)
        assert got == expected, (step, mode, cost)


@pytest.mark.parametrize("runtime", sorted(EMBEDDED))
@pytest.mark.parametrize("algorithm_name", sorted(ALGORITHMS))
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios(), counting=COUNTINGS)
def test_the_embedded_backend_agrees_with_the_model(
    algorithm_name, runtime, scenario, counting, clock
):
    backend = EMBEDDED[runtime](clock=clock)
    check_agreement(backend, clock, algorithm_name, scenario, counting)


@pytest.mark.parametrize("algorithm_name", sorted(ALGORITHMS))
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios(whole_seconds=True), counting=COUNTINGS)
def test_redis_agrees_with_the_model(
    algorithm_name, scenario, counting, redis_client, clock
):
    check_agreement(SyncRedis(redis_client), clock, algorithm_name, scenario, counting)
