"""Penalties agree with a reference model under hypothesis (issue #25,
item 2): random hits, peeks and waits on the embedded backend, limits with
and without penalties, both ways of counting, against each algorithm's
plain-Python model (``models.py``) with a penalty box around it."""

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from luathrottle import Decision, Limit, Limiter
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
def scenarios(draw):
    limits = draw(
        st.lists(
            st.tuples(
                st.integers(1, 4),
                st.integers(1, 6),
                st.one_of(st.just(0), st.integers(1, 12_000_000)),
            ),
            min_size=1,
            max_size=3,
            unique_by=lambda limit: limit[:2],
        )
    )
    ops = draw(
        st.lists(
            st.tuples(
                st.integers(0, 4_000_000),
                st.sampled_from(["hit", "hit", "peek"]),
                st.integers(1, 3),
            ),
            min_size=1,
            max_size=30,
        )
    )
    burst = draw(st.one_of(st.none(), st.integers(1, 5)))
    return limits, ops, burst


@pytest.mark.parametrize("runtime", sorted(EMBEDDED))
@pytest.mark.parametrize("algorithm_name", sorted(ALGORITHMS))
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios(), counting=st.sampled_from(["all_or_nothing", "each"]))
def test_penalties_agree_with_the_model(
    algorithm_name, runtime, scenario, counting, clock
):
    limits, ops, burst = scenario
    algorithm, model_type = ALGORITHMS[algorithm_name]
    limiter = Limiter(
        [
            Limit(m, d, name=f"limit {i}", penalty=p / 1_000_000 if p else None)
            for i, (m, d, p) in enumerate(limits)
        ],
        algorithm=algorithm(burst),
        backend=EMBEDDED[runtime](clock=clock),
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
