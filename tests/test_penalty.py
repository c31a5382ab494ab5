"""The penalty box (issue #25, item 2): ``penalty=`` on a limit, a limiter
or a throttle. Once a limit denies a key, every hit of that key is denied
by that limit until the penalty ends, counted from the denial, decided in
the same script call; ``retry_after`` is the penalty left. Each algorithm,
on the embedded backend, a real Redis and the Django cache path.
"""

import asyncio
import math
import uuid
from typing import Any

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from luathrottle import (
    AsyncLimiter,
    LeakyBucket,
    Limit,
    Limiter,
    Reason,
    SimpleRate,
    TokenBucket,
)
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from luathrottle.django import SyncThrottle, throttle
from luathrottle.rates import MAX_DURATION
from states import read_state, state_ttl, write_state
from test_limit_changes import ALGORITHMS

#: Two hits every 10 seconds; a key that asks for a third sits out a minute.
PENALISED = Limit(2, 10, penalty=60)


@pytest.fixture
def backend(every_sync_store: Any) -> Any:
    return every_sync_store


@pytest.fixture(params=sorted(ALGORITHMS))
def algorithm(request: pytest.FixtureRequest) -> Any:
    return ALGORITHMS[request.param]()


def limiter_of(limits: Any, algorithm: Any, backend: Any, clock: Any, **options: Any):
    return Limiter(
        limits,
        algorithm=algorithm,
        backend=backend,
        prefix=uuid.uuid4().hex[:8],
        clock=clock,
        **options,
    )


def test_a_denial_denies_every_hit_until_the_penalty_ends(algorithm, backend, clock):
    limiter = limiter_of(PENALISED, algorithm, backend, clock)
    assert [limiter.hit("k").allowed for _ in range(2)] == [True, True]
    start = clock.now
    denied = limiter.hit("k")
    assert not denied.allowed
    assert denied.reason is Reason.LIMIT_EXCEEDED
    assert denied.retry_after == 60
    assert denied.remaining == 0
    # The limit alone would admit it by now: the penalty still denies, and
    # counts down from the first denial, which later denials never lengthen.
    for waited in (11, 31, 59.5):
        clock.now = start + waited
        left = 60 - waited
        for _ in range(2):
            decision = limiter.hit("k")
            assert not decision.allowed
            assert decision.retry_after == pytest.approx(left)
            assert decision.reset_after >= decision.retry_after
        assert not limiter.peek("k").allowed
    # Over: the limit judges the key again, and a new denial starts anew.
    clock.now = start + 60
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]
    assert limiter.peek("k").retry_after == 60


def test_a_peek_never_starts_a_penalty(algorithm, backend, clock):
    limiter = limiter_of(PENALISED, algorithm, backend, clock)
    limiter.hit("k", cost=2)
    peeked = limiter.peek("k")
    assert not peeked.allowed
    assert peeked.retry_after < 60
    clock.advance(peeked.retry_after)
    assert limiter.hit("k").allowed


def test_a_penalty_on_one_limit_of_several(algorithm, backend, clock):
    hourly = Limit(100, 3600)
    limiter = limiter_of([hourly, PENALISED], algorithm, backend, clock)
    limiter.hit("k", cost=2)
    denied = limiter.hit("k")
    assert [item.allowed for item in denied.limits] == [True, False]
    assert denied.retry_after == 60
    clock.advance(30)
    decision = limiter.hit("k")
    assert decision.limits[1].retry_after == 30
    assert decision.limits[0].allowed
    # Nothing was counted while the penalty ran (all or nothing).
    assert decision.limits[0].remaining == hourly.max_requests - 2
    # A limit without a penalty denies only while its quota is spent.
    other = limiter_of(
        [Limit(2, 10), Limit(100, 3600, penalty=60)], algorithm, backend, clock
    )
    other.hit("k", cost=2)
    wait = other.hit("k").retry_after
    assert wait <= 20
    clock.advance(wait)
    assert other.hit("k").allowed


def test_retry_after_is_the_limits_wait_when_that_is_longer(backend, clock):
    limiter = limiter_of(Limit(2, 60, penalty=5), SimpleRate(), backend, clock)
    limiter.hit("k", cost=2)
    assert limiter.hit("k").retry_after == 60
    clock.advance(10)
    assert limiter.hit("k").retry_after == 50


def test_penalty_under_counting_each(backend, clock):
    limiter = limiter_of(
        [Limit(100, 3600), PENALISED], SimpleRate(), backend, clock, counting="each"
    )
    limiter.hit("k", cost=2)
    denied = limiter.hit("k")
    assert denied.retry_after == 60
    # The hourly limit admits and counts it; the penalised one does not.
    assert denied.limits[0].remaining == 97
    clock.advance(20)
    assert limiter.hit("k").limits[1].retry_after == 40


def test_the_limiters_penalty_is_each_limits_default(clock):
    limiter = Limiter(
        ["5/minute", Limit(10, 3600, penalty=2.5)], penalty=30, clock=clock
    )
    assert [limit.penalty for limit in limiter.limits] == [30, 2.5]
    limiter = Limiter(
        "5/minute", penalty=30, backend=MemoryBackend(clock=clock), clock=clock
    )
    limiter.hit("k", limits="1/10s")
    # Per-call limits take it too.
    assert limiter.hit("k", limits="1/10s").retry_after == 30
    assert limiter.hit("k").allowed


def test_the_denial_cache_leaves_penalised_calls_to_the_store(clock):
    limiter = Limiter(
        PENALISED,
        backend=MemoryBackend(clock=clock),
        clock=clock,
        cache_denials=True,
    )
    limiter.hit("k", cost=2)
    assert limiter.hit("k").retry_after == 60
    clock.advance(15)
    assert limiter.hit("k").retry_after == 45


def test_async_limiter(clock):
    limiter = AsyncLimiter(
        PENALISED, backend=MemoryBackend(clock=clock), clock=clock, penalty=1
    )

    async def run() -> list[float | None]:
        await limiter.hit("k", cost=2)
        waits = [(await limiter.hit("k")).retry_after]
        clock.advance(59)
        waits.append((await limiter.hit("k")).retry_after)
        clock.advance(1)
        waits.append((await limiter.hit("k")).retry_after)
        return waits

    assert asyncio.run(run()) == [60, 1, None]


@pytest.mark.parametrize(
    "penalty", [0, -1, math.nan, math.inf, 1e-9, MAX_DURATION + 1, "5", True, [5]]
)
def test_a_bad_penalty_is_refused_naming_it(penalty):
    for make in (
        lambda: Limit(5, 60, penalty=penalty),
        lambda: Limiter(5, 60, penalty=penalty),
        lambda: SyncThrottle(5, 60, penalty=penalty),
    ):
        with pytest.raises((TypeError, ValueError), match="penalty"):
            make()


def test_a_django_view_answers_429_with_the_penalty_left(backend, clock):
    @throttle(
        SyncThrottle(
            2, 10, backend=backend, clock=clock, penalty=60, scope=uuid.uuid4().hex
        ),
        allow_unsafe_cache=None,
    )
    def view(request):
        return HttpResponse("inside")

    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.8")
    answers = [view(request) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[2]["Retry-After"] == "60"
    clock.advance(25)
    answer = view(request)
    assert answer.status_code == 429
    assert answer["Retry-After"] == "35"
    clock.advance(35)
    assert view(request).status_code == 200


def test_a_throttle_limit_with_its_own_penalty(clock):
    memory = MemoryBackend(clock=clock)
    inner = SyncThrottle(Limit(1, 10, penalty=5), backend=memory, penalty=99)
    assert inner.limit.penalty == 5
    assert SyncThrottle("1/10s", backend=memory, penalty=99).limit.penalty == 99


def test_a_refund_leaves_the_penalty_and_a_reset_forgets_it(algorithm, backend, clock):
    limiter = limiter_of(PENALISED, algorithm, backend, clock)
    limiter.hit("k", cost=2)
    assert limiter.hit("k").retry_after == 60
    clock.advance(5)
    limiter.refund("k", 2)
    assert limiter.hit("k").retry_after == 55
    limiter.reset("k")
    assert limiter.hit("k").allowed


def test_dropping_the_penalty_lifts_a_running_one(algorithm, backend, clock):
    limiter = limiter_of(PENALISED, algorithm, backend, clock)
    limiter.hit("k", cost=2)
    assert limiter.hit("k").retry_after == 60
    clock.advance(30)
    lifted = Limiter(
        Limit(2, 10),
        algorithm=algorithm,
        backend=backend,
        prefix=limiter.prefix,
        clock=clock,
    )
    assert lifted.hit("k").allowed


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, clock: Any) -> Any:
    if request.param == "memory":
        return MemoryBackend(clock=clock)
    return SyncRedis(request.getfixturevalue("redis_client"))


def test_the_state_keeps_the_penalty_and_lives_as_long(algorithm, store, clock):
    limiter = limiter_of(PENALISED, algorithm, store, clock)
    [key] = limiter.state_keys("k")
    limiter.hit("k", cost=2)
    before = read_state(store, key)
    limiter.hit("k")
    end_us = round(clock() * 1_000_000) + 60_000_000
    # The limit's own state, as it was, and when the penalty ends.
    assert read_state(store, key) == f"{before}:{end_us}"
    # A bucket's hash lives to the end of the block after the next of its
    # full bucket (2 requests or tokens of 5 s) that the penalty ends in: the
    # clock starts on a multiple of 10 s, so two buckets more.
    bucket = isinstance(algorithm, (TokenBucket, LeakyBucket))
    longest = 80_000 if bucket else 60_000
    assert longest - 1_000 < state_ttl(store, key) <= longest


def test_a_penalty_longer_than_the_limits_is_ignored(algorithm, store, clock):
    limiter = limiter_of(PENALISED, algorithm, store, clock)
    [key] = limiter.state_keys("k")
    limiter.hit("k")
    # Five minutes' margin for clocks, and not a microsecond more.
    now_us = round(clock() * 1_000_000)
    margin = 60_000_000 + 300_000_000
    write_state(store, key, f"{read_state(store, key)}:{now_us + margin + 1}")
    assert limiter.hit("k").allowed
    write_state(store, key, f"{read_state(store, key)}:{now_us + margin}")
    assert limiter.hit("k").retry_after == pytest.approx(margin / 1e6)


class CountingMemory(MemoryBackend):
    """The embedded backend, counting its script calls."""

    calls = 0

    def run_script(self, script, keys, args):
        self.calls += 1
        return super().run_script(script, keys, args)


def test_each_decision_is_one_script_call(algorithm, clock):
    backend = CountingMemory(clock=clock)
    limiter = limiter_of([Limit(100, 3600), PENALISED], algorithm, backend, clock)
    decisions = [limiter.hit("k") for _ in range(4)]
    clock.advance(30)
    decisions.append(limiter.hit("k"))
    assert [d.retry_after for d in decisions] == [None, None, 60, 60, 30]
    assert backend.calls == 5
