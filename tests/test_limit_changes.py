"""Limit changes keep their counts (issue #25, item 4).

A state key names a limit by its name, else by its window, never by its
numbers: a limiter rebuilt with a lowered limit finds the count the higher
one left, and its script judges that count against the limit it is given
now. Each algorithm, on the embedded backend, on a real Redis and on the
Django cache path (staged on LocMem, and on Django's Redis cache).
"""

import logging
import uuid
from typing import Any

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import RequestFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Clock
from luathrottle import (
    Decision,
    LeakyBucket,
    Limit,
    Limiter,
    Reason,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.backends.memory import MemoryBackend
from luathrottle.django import SyncThrottle, throttle
from runtimes import EMBEDDED
from test_model_agreement import ALGORITHMS as MODELS

ALGORITHMS = {
    "simple": SimpleRate,
    "sliding": SlidingWindow,
    "token": TokenBucket,
    "leaky": LeakyBucket,
}
HOUR = 3600
#: What the logger says of a state the scripts cannot read as their own.
UNREADABLE = "not written by luathrottle"


@pytest.fixture
def backend(every_sync_store: Any) -> Any:
    return every_sync_store


@pytest.fixture(params=sorted(ALGORITHMS))
def make(request: pytest.FixtureRequest, backend: Any, clock: Any) -> Any:
    """Builds limiters of one algorithm on one store, as successive deploys
    of one application would: same prefix, other limits."""
    algorithm = ALGORITHMS[request.param]()
    prefix = uuid.uuid4().hex[:8]

    def limiter(*limits: Any) -> Limiter:
        return Limiter(
            list(limits),
            algorithm=algorithm,
            backend=backend,
            prefix=prefix,
            clock=clock,
        )

    limiter.algorithm = request.param  # type: ignore[attr-defined]
    return limiter


def test_a_lowered_limit_denies_at_once_and_the_count_carries_on(make, caplog):
    high, low = make("100/hour"), make("10/hour")
    assert all(high.hit("abuser").allowed for _ in range(50))
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        denied = low.hit("abuser")
    assert not caplog.records
    assert not denied.allowed
    assert denied.reason is Reason.LIMIT_EXCEEDED
    assert denied.limit == 10
    assert denied.remaining == 0
    assert denied.retry_after is not None
    if make.algorithm in ("token", "leaky"):
        # 50 requests in a bucket of 10 that drains one every 6 minutes:
        # room for one more once 41 have drained.
        assert denied.retry_after == 41 * 360
    else:
        # Not before the count's window has ended.
        assert denied.retry_after > HOUR / 2
    assert low.peek("abuser").remaining == 0
    # Denials consumed nothing: the higher limit still sees its 50.
    assert high.peek("abuser").remaining == 50


def test_a_raised_limit_admits_only_the_difference(make):
    low, higher = make("10/hour"), make("15/hour")
    assert [low.hit("u").allowed for _ in range(11)] == [True] * 10 + [False]
    assert [higher.hit("u").allowed for _ in range(6)] == [True] * 5 + [False]
    assert higher.peek("u").remaining == 0
    assert not low.peek("u").allowed


def test_a_named_limit_keeps_its_count_across_a_window_change(make, clock, caplog):
    hourly = make(Limit(10, HOUR, name="api"))
    assert all(hourly.hit("u").allowed for _ in range(10))
    minutely = make(Limit(10, 60, name="api"))
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        denied = minutely.hit("u")
    # The state is read as the count it is, not as someone else's.
    assert not caplog.records
    assert not denied.allowed
    assert denied.remaining == 0
    # Within windows of the new length: no hour-long wait.
    assert denied.retry_after is not None
    assert 0 < denied.retry_after <= 2 * 60
    assert 0 < denied.reset_after <= 2 * 60
    clock.advance(2 * 60 + 1)
    assert minutely.hit("u").remaining == 9


def test_an_unnamed_limit_of_a_new_window_counts_afresh(make):
    assert all(make("10/hour").hit("u").allowed for _ in range(10))
    assert make("10/minute").hit("u").remaining == 9


@pytest.mark.parametrize(
    "limits",
    [
        ["100/hour", "10/hour"],
        # Named as Limit names it by default: as good as unnamed.
        ["100/hour", Limit(10, HOUR, name="10/3600s")],
        [Limit(100, HOUR, name="api"), Limit(10, 60, name="api")],
    ],
    ids=["one-window", "default-name", "one-name"],
)
def test_limits_that_would_share_a_counter_are_refused(limits):
    with pytest.raises(ValueError, match=r"max_requests holds .*(name|twice)"):
        Limiter(limits, backend=MemoryBackend())


def test_one_window_twice_names_the_culprits_and_the_fix():
    with pytest.raises(ValueError, match="would count on one counter") as raised:
        Limiter(["100/hour", "10/hour", "1/minute"], backend=MemoryBackend())
    message = str(raised.value)
    assert "'100/3600s' and '10/3600s'" in message
    assert "give them name=" in message
    Limiter(["100/hour", Limit(10, HOUR, name="burst")], backend=MemoryBackend()).hit(
        "u"
    )


def test_per_call_limits_that_would_share_a_counter_are_refused():
    limiter = Limiter("5/minute", backend=MemoryBackend())
    with pytest.raises(ValueError, match=r"limits holds .*give them name="):
        limiter.hit("u", limits=["5/minute", "50/minute"])


def test_a_throttles_rate_change_keeps_its_key(rf):
    """A Django throttle counts by its cache key name and window: a new
    rate of one window counts on, a new window counts apart."""
    request = rf.get("/", REMOTE_ADDR="192.0.2.7")
    memory = MemoryBackend()

    def key(*rate: Any) -> str | None:
        return SyncThrottle(*rate, backend=memory).state_key(request, "view")

    assert key(100, HOUR) == key(10, HOUR) == key("10/hour")
    assert key(10, 60) != key(10, HOUR)


def test_a_throttle_lowered_on_a_view_denies_at_once(rf, clock):
    """On the default store, Django's cache: one view, rebuilt."""
    caches["default"].clear()

    def view_limited(rate: str) -> Any:
        @throttle(SyncThrottle(rate, clock=clock), allow_unsafe_cache=None)
        def view(request):
            return HttpResponse("inside")

        return view

    high, low = view_limited("100/hour"), view_limited("10/hour")
    request = rf.get("/", REMOTE_ADDR="192.0.2.7")
    assert all(high(request).status_code == 200 for _ in range(20))
    assert low(request).status_code == 429


def test_two_throttles_of_one_window_on_a_view_count_apart_by_rate():
    # The chapter's class-level and method-level throttles: one cache key,
    # one window, two rates, two counts.
    memory = MemoryBackend()

    @throttle(
        SyncThrottle(5, HOUR, backend=memory),
        SyncThrottle(3, HOUR, backend=memory),
        allow_unsafe_cache=None,
    )
    def view(request):
        return HttpResponse()

    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.8")
    answers = [view(request) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]


def test_two_throttles_that_would_still_share_a_counter_are_refused():
    memory = MemoryBackend()
    with pytest.raises(ImproperlyConfigured, match="would share one counter"):

        @throttle(
            SyncThrottle(10, HOUR, backend=memory),
            SyncThrottle(10, HOUR, backend=memory),
            allow_unsafe_cache=None,
        )
        def view(request):
            return HttpResponse()


@st.composite
def changing_limits(draw):
    """Named limits, so their counters stay, and for each call the numbers
    each has then: any of 1 to 6 requests over 1 to 4 seconds."""
    size = draw(st.integers(1, 2))
    numbers = st.tuples(st.integers(1, 6), st.integers(1, 4))
    call = st.tuples(
        st.integers(0, 3_000_000),
        st.sampled_from(["hit", "hit", "peek"]),
        st.integers(1, 4),
        # A limiter refuses two limits of the same numbers, named or not.
        st.lists(numbers, min_size=size, max_size=size, unique=True),
    )
    return size, draw(st.lists(call, min_size=1, max_size=25))


@pytest.mark.parametrize("runtime", sorted(EMBEDDED))
@pytest.mark.parametrize("algorithm_name", sorted(MODELS))
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=changing_limits(), burst=st.one_of(st.none(), st.integers(1, 6)))
def test_changing_limits_agree_with_the_models(
    algorithm_name, runtime, scenario, burst
):
    """Every call under other numbers than the last, and the scripts judge
    each state as the reference models do (``tests/models.py``)."""
    algorithm, model_type = MODELS[algorithm_name]
    size, calls = scenario
    clock = Clock()
    limiter = Limiter(
        [Limit(i + 1, 1, name=f"limit {i}") for i in range(size)],
        algorithm=algorithm(burst),
        backend=EMBEDDED[runtime](clock=clock),
        clock=clock,
    )
    keys = limiter.state_keys("identity")
    model = model_type(burst)
    for step, mode, cost, numbers in calls:
        clock.advance(step / 1_000_000)
        now = round(clock() * 1_000_000)
        limits = [Limit(m, d, name=f"limit {i}") for i, (m, d) in enumerate(numbers)]
        reply = model.call(keys, numbers, cost, now, mode == "hit")
        got = getattr(limiter, mode)("identity", cost, limits=limits)
        assert got == Decision.from_reply(limits, reply), (step, mode, cost, numbers)


def test_a_remembered_denial_is_not_replayed_under_a_raised_limit(clock):
    limiter = Limiter(
        "2/hour", backend=MemoryBackend(clock=clock), clock=clock, cache_denials=True
    )
    assert [limiter.hit("u").allowed for _ in range(3)] == [True, True, False]
    assert not limiter.hit("u").allowed  # answered by the cache
    raised = limiter.hit("u", limits="3/hour")
    assert (raised.allowed, raised.remaining) == (True, 0)
    assert not limiter.hit("u").allowed
