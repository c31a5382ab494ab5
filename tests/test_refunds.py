"""Limiter.refund and Limiter.reserve: every backend agrees with the
reference models (``models.py``'s ``refund``), and the rules hold: a refund
never leaves more than the limit, never makes a window longer, and gives
nothing once the hit's window or bucket has moved on."""

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Clock
from luathrottle import (
    AsyncLimiter,
    AsyncReservation,
    Decision,
    LeakyBucket,
    Limit,
    Limiter,
    Reservation,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.backends.django_cache import SyncDjangoCache
from luathrottle.backends.memory import MemoryBackend
from runtimes import EMBEDDED
from states import state_ttl
from test_model_agreement import ALGORITHMS

_counter = itertools.count()
ALL = [SimpleRate(), SlidingWindow(), TokenBucket(), LeakyBucket()]
IDS = ["simple_rate", "sliding_window", "token_bucket", "leaky_bucket"]


@st.composite
def scenarios(draw, whole_seconds: bool):
    size = draw(st.integers(1, 2))
    limits = []
    for _ in range(size):
        max_requests = draw(st.integers(1, 5))
        factor = draw(st.integers(1, 3))
        duration = max_requests * factor if whole_seconds else factor * 2
        limits.append((max_requests, duration))
    limits = list(dict.fromkeys(limits))
    step = (
        st.integers(0, 4).map(lambda s: s * 1_000_000)
        if whole_seconds
        else st.integers(0, 3_000_000)
    )
    kinds = st.sampled_from(["hit", "peek", "refund", "reserve", "settle", "settle"])
    ops = draw(
        st.lists(st.tuples(step, kinds, st.integers(0, 4)), min_size=1, max_size=25)
    )
    burst = draw(st.one_of(st.none(), st.integers(1, 6)))
    return limits, ops, burst


def check_refunds(backend, clock, algorithm_name, scenario):
    """Hits, refunds and reservations against the model, decision for
    decision; a reservation anchors its refund with its hit's reply."""
    algorithm, model_type = ALGORITHMS[algorithm_name]
    limits, ops, burst = scenario
    limiter = Limiter(
        [Limit(m, d, name=f"limit {i}") for i, (m, d) in enumerate(limits)],
        algorithm=algorithm(burst),
        backend=backend,
        prefix=f"refund{next(_counter)}",
        clock=clock,
    )
    model = model_type(burst)
    keys = limiter.state_keys("who")
    pending = []
    for step, kind, cost in ops:
        clock.advance(step / 1_000_000)
        now = round(clock() * 1_000_000)
        at_least_one = max(cost, 1)
        if kind in ("hit", "reserve"):
            reply = model.call(keys, limits, at_least_one, now, True)
            expected = Decision.from_reply(limiter.limits, reply)
            if kind == "hit":
                got = limiter.hit("who", at_least_one)
            else:
                reservation = limiter.reserve("who", at_least_one)
                got = reservation.decision
                if got.allowed:
                    anchors = [now + reply[5 * i + 3] for i in range(len(limits))]
                    pending.append((reservation, anchors))
        elif kind == "peek":
            reply = model.call(keys, limits, at_least_one, now, False)
            expected = Decision.from_reply(limiter.limits, reply)
            got = limiter.peek("who", at_least_one)
        elif kind == "refund":
            reply = model.refund(keys, limits, at_least_one, now)
            expected = Decision.from_reply(limiter.limits, reply)
            got = limiter.refund("who", at_least_one)
        elif pending:
            reservation, anchors = pending.pop(0)
            estimate = reservation.estimate
            if cost < estimate:
                reply = model.refund(keys, limits, estimate - cost, now, anchors)
            elif cost > estimate:
                reply = model.call(keys, limits, cost - estimate, now, True)
            else:
                reply = None
            got = reservation.settle(cost)
            expected = (
                reservation.decision
                if reply is None
                else Decision.from_reply(limiter.limits, reply)
            )
        else:
            continue
        assert got == expected, (step, kind, cost)
        if isinstance(backend, MemoryBackend) and not limiter.script.hashed:
            for key, (limit, _) in zip(keys, limits, strict=True):
                # Expiries are whole milliseconds, rounded up when written.
                most = model.ttl_ms(key, limit, now) if key in model.state else 0
                if most > 0:
                    assert 0 <= state_ttl(backend, key) - most <= 1
                else:
                    assert state_ttl(backend, key) < 0


@pytest.mark.parametrize("runtime", sorted(EMBEDDED))
@pytest.mark.parametrize("algorithm_name", sorted(ALGORITHMS))
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios(whole_seconds=False))
def test_memory_refunds_agree_with_model(algorithm_name, runtime, scenario, clock):
    check_refunds(EMBEDDED[runtime](clock=clock), clock, algorithm_name, scenario)


@pytest.mark.parametrize("algorithm_name", sorted(ALGORITHMS))
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios(whole_seconds=True))
def test_every_backend_refunds_agree_with_model(
    algorithm_name, scenario, sync_backend, clock
):
    check_refunds(sync_backend, clock, algorithm_name, scenario)


@pytest.mark.parametrize("algorithm", ALL, ids=IDS)
def test_a_refund_never_leaves_more_than_the_limit(algorithm, sync_backend, clock):
    limiter = Limiter(5, 60, algorithm=algorithm, backend=sync_backend, clock=clock)
    limiter.hit("a", 2)
    assert limiter.refund("a", 4).remaining == 5
    assert limiter.peek("a", 5).allowed
    assert not limiter.peek("a", 6).allowed


def test_a_refund_never_makes_a_window_longer(sync_backend, clock):
    limiter = Limiter(5, 60, backend=sync_backend, clock=clock)
    first = limiter.hit("a", 3)
    clock.advance(20)
    refunded = limiter.refund("a", 2)
    assert refunded.remaining == 4
    assert refunded.reset_after == first.reset_after - 20
    clock.advance(40)
    # The window ended when it would have: the full quota is back.
    assert limiter.peek("a", 5).allowed


@pytest.mark.parametrize("algorithm", ALL, ids=IDS)
def test_a_refund_gives_nothing_to_a_window_that_moved_on(
    algorithm, sync_backend, clock
):
    limiter = Limiter(2, 60, algorithm=algorithm, backend=sync_backend, clock=clock)
    reservation = limiter.reserve("a", 2)
    clock.advance(120)
    limiter.hit("a", 2)
    assert not limiter.peek("a").allowed
    assert reservation.settle(0).remaining == 0
    assert not limiter.peek("a").allowed


@pytest.mark.parametrize("algorithm", ALL, ids=IDS)
def test_settling_below_the_estimate_gives_the_rest_back(
    algorithm, sync_backend, clock
):
    limiter = Limiter(10, 60, algorithm=algorithm, backend=sync_backend, clock=clock)
    reservation = limiter.reserve("a", 8)
    assert isinstance(reservation, Reservation)
    assert reservation.allowed
    assert reservation.decision.remaining == 2
    assert reservation.settle(3).remaining == 7
    assert limiter.peek("a", 7).allowed
    assert not limiter.peek("a", 8).allowed


def test_settling_above_the_estimate_spends_the_rest_if_it_fits(sync_backend, clock):
    limiter = Limiter(10, 60, backend=sync_backend, clock=clock)
    reservation = limiter.reserve("a", 4)
    assert reservation.settle(7).remaining == 3
    over = limiter.reserve("a", 2)
    denied = over.settle(5)
    assert not denied.allowed
    assert denied.remaining == 1
    assert limiter.peek("a").remaining == 1


def test_settling_twice_or_a_denied_reservation_raises(clock):
    limiter = Limiter(2, 60, backend=MemoryBackend(clock=clock), clock=clock)
    reservation = limiter.reserve("a", 2)
    assert reservation.settle(2) == reservation.decision
    with pytest.raises(RuntimeError, match="settled already"):
        reservation.settle(1)
    denied = limiter.reserve("a", 1)
    assert not denied.allowed
    with pytest.raises(RuntimeError, match="denied"):
        denied.settle(0)


def test_bad_costs_are_named(clock):
    limiter = Limiter(2, 60, backend=MemoryBackend(clock=clock), clock=clock)
    with pytest.raises(ValueError, match="cost"):
        limiter.refund("a", 0)
    with pytest.raises(TypeError, match="estimate"):
        limiter.reserve("a", 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="actual"):
        limiter.reserve("a", 1).settle(-1)


def test_a_refund_forgets_cached_denials(clock):
    limiter = Limiter(
        1, 60, backend=MemoryBackend(clock=clock), clock=clock, cache_denials=True
    )
    limiter.hit("a")
    assert not limiter.hit("a").allowed
    limiter.refund("a")
    assert limiter.hit("a").allowed


async def test_async_twins(async_backend, clock):
    limiter = AsyncLimiter(10, 60, backend=async_backend, clock=clock)
    reservation = await limiter.reserve("a", 6)
    assert isinstance(reservation, AsyncReservation)
    assert (await reservation.settle(2)).remaining == 8
    assert (await limiter.refund("a", 1)).remaining == 9
    assert (await (await limiter.reserve("a", 1)).settle(3)).remaining == 6


@pytest.mark.parametrize("alias", ["default", "redis"])
@pytest.mark.parametrize("algorithm", ALL, ids=IDS)
def test_refunds_on_django_caches(alias, algorithm, clock, request):
    from test_django_cache import prepare_cache

    prepare_cache(request, alias)
    backend = SyncDjangoCache(alias)
    limiter = Limiter(4, 60, algorithm=algorithm, backend=backend, clock=clock)
    reservation = limiter.reserve("a", 4)
    assert reservation.settle(1).remaining == 3
    assert limiter.refund("a", 5).remaining == 4
    clock2 = Clock(clock() + 120)
    late = Limiter(4, 60, algorithm=algorithm, backend=backend, clock=clock2)
    assert late.peek("a", 4).allowed


def test_reservation_twins_expose_the_same_methods():
    def public(cls):
        return {name for name in dir(cls) if not name.startswith("_")}

    assert public(Reservation) == public(AsyncReservation)
    assert public(Reservation) == {"allowed", "decision", "estimate", "settle"}


def test_settle_validates_actual_before_it_spends(clock):
    limiter = Limiter(5, 60, backend=MemoryBackend(clock=clock), clock=clock)
    reservation = limiter.reserve("a", 3)
    with pytest.raises(TypeError, match="actual"):
        reservation.settle(True)  # type: ignore[arg-type]
    # Nothing was settled: a good actual still settles.
    assert reservation.settle(0).remaining == 5


def test_a_shadowed_reservation_gives_nothing_back(clock):
    limiter = Limiter(
        1, 60, backend=MemoryBackend(clock=clock), clock=clock, shadow=True
    )
    reservation = limiter.reserve("a", 1)
    assert reservation.settle(0) == reservation.decision
    # The store counted the hit and showed no quota: nothing names its
    # window, so it stays counted, and the store denies the next.
    assert limiter.reserve("a", 1).decision.reason == "shadow_denied"
