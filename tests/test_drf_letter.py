"""``luathrottle.drf`` to DRF's letter: ``BaseThrottle`` ports by import,
each subclass keeps its own scope, every rate luathrottle documents or DRF
reads works in ``DEFAULT_THROTTLE_RATES`` while anything else is refused at
start-up, naming the setting; DRF's ``timer`` moves time, any clock may
count from zero and be swapped at any time, and DRF's ``cache`` attribute
picks the store."""

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from rest_framework import throttling as drf_throttling
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from luathrottle.backends.memory import MemoryBackend
from luathrottle.django.checks import check_settings
from luathrottle.drf import (
    AnonRateThrottle,
    BaseThrottle,
    ScopedRateThrottle,
    SimpleRateThrottle,
    UserRateThrottle,
)


def rates(**given):
    return override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": given})


def test_base_throttle_is_drfs_own():
    assert BaseThrottle is drf_throttling.BaseThrottle


def test_a_scope_set_on_the_base_class_stays_there(monkeypatch):
    monkeypatch.setattr(SimpleRateThrottle, "scope", "everyone", raising=False)
    monkeypatch.setattr(drf_throttling.SimpleRateThrottle, "scope", "everyone")
    assert UserRateThrottle.scope == drf_throttling.UserRateThrottle.scope == "user"
    assert AnonRateThrottle.scope == drf_throttling.AnonRateThrottle.scope == "anon"
    assert UserRateThrottle().scope == "user"
    assert ScopedRateThrottle.scope_attr == "throttle_scope"


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [
        ("5/2h", (5, 7200)),
        ("100/10s", (100, 10)),
        ("100/minute", (100, 60)),
        ("5/mins", (5, 60)),
        ("2/hr", (2, 3600)),
        ("1000/day", (1000, 86400)),
    ],
)
def test_every_documented_rate_and_drfs_own_are_read(rate, parsed):
    with rates(anon=rate):
        throttle = AnonRateThrottle()
    assert (throttle.num_requests, throttle.duration) == parsed


@pytest.mark.parametrize("rate", ["5 per minute", "5/fortnight", "0/minute", "x/m"])
def test_anything_else_is_refused_naming_the_throttle_and_the_setting(rate):
    with rates(anon=rate):
        with pytest.raises(
            ImproperlyConfigured, match=r"AnonRateThrottle \(scope 'anon'\)"
        ):
            AnonRateThrottle()
        messages = check_settings()
    assert [message.id for message in messages] == ["luathrottle.E001"]
    assert "REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']['anon']" in messages[0].msg


def test_good_rates_pass_the_checks():
    with rates(anon="5/2h", user="100/10s", burst=None):
        assert check_settings() == []


factory = APIRequestFactory()


def view_of(*throttles):
    class View(APIView):
        throttle_classes = throttles

        def get(self, request):
            return Response("ok")

    return View.as_view()


def statuses(view, times, addr="192.0.2.7"):
    return [view(factory.get("/", REMOTE_ADDR=addr)).status_code for _ in range(times)]


def test_drfs_timer_moves_time_even_when_reassigned_between_requests():
    # DRF's own way to move time in tests: the store's clock would still
    # count all of these inside one minute.
    class Minutely(AnonRateThrottle):
        scope = "timer-minutely"
        rate = "3/min"

    Minutely.timer = lambda self: 0
    view = view_of(Minutely)
    assert statuses(view, 3) == [200, 200, 200]
    Minutely.timer = lambda self: 20
    denied = view(factory.get("/", REMOTE_ADDR="192.0.2.7"))
    assert (denied.status_code, denied["Retry-After"]) == (429, "40")
    Minutely.timer = lambda self: 60
    assert statuses(view, 4) == [200, 200, 200, 429]


def test_a_clock_may_count_from_zero_and_be_swapped_after_the_first_request():
    moments = [0.0]

    class FromZero(AnonRateThrottle):
        scope = "from-zero"
        rate = "2/min"
        backend = MemoryBackend()
        clock = staticmethod(lambda: moments[0])

    view = view_of(FromZero)
    assert statuses(view, 3) == [200, 200, 429]
    moments[0] = 59.5
    assert statuses(view, 1) == [429]
    FromZero.clock = staticmethod(lambda: 60.0)
    assert statuses(view, 3) == [200, 200, 429]


@pytest.mark.parametrize(
    ("reading", "wrong"),
    [(-1, "-1"), (1.7e12, "1700000000000.0"), ("0", "'0'"), (float("nan"), "nan")],
)
def test_a_timer_that_cannot_be_seconds_is_refused_naming_it(reading, wrong):
    class Odd(AnonRateThrottle):
        scope = "odd-timer"
        rate = "2/min"
        backend = MemoryBackend()

        def timer(self):
            return reading

    with pytest.raises(ImproperlyConfigured, match=rf"Odd\.timer\(\).*got {wrong}"):
        view_of(Odd)(factory.get("/"))


def test_a_timer_and_a_clock_together_are_refused():
    class Both(AnonRateThrottle):
        scope = "both"
        rate = "2/min"
        clock = staticmethod(lambda: 0)

        def timer(self):
            return 0

    with pytest.raises(ImproperlyConfigured, match="Both sets both timer and clock"):
        view_of(Both)(factory.get("/"))


def two_throttles(first_clock, second_clock, counting):
    backend = MemoryBackend()

    class Burst(AnonRateThrottle):
        scope = "burst"
        rate = "1/s"

    class Hourly(AnonRateThrottle):
        scope = "hourly"
        rate = "3/h"

    for throttle, clock in ((Burst, first_clock), (Hourly, second_clock)):
        throttle.backend = backend
        throttle.clock = staticmethod(clock)
        throttle.counting = counting
    return view_of(Burst, Hourly)


def test_a_clock_per_class_keeps_all_or_nothing_when_they_agree():
    now = [1_700_000_005.0]
    view = two_throttles(lambda: now[0], lambda: now[0], "all_or_nothing")
    # The burst denies four: under all or nothing the hour counts only one.
    assert statuses(view, 5) == [200, 429, 429, 429, 429]
    now[0] += 1
    assert statuses(view, 1) == [200]
    now[0] += 1
    assert statuses(view, 1) == [200]
    now[0] += 1
    assert statuses(view, 1) == [429]


def test_clocks_that_disagree_are_refused_under_all_or_nothing_not_ignored():
    view = two_throttles(lambda: 5.0, lambda: 6.0, "all_or_nothing")
    with pytest.raises(
        ImproperlyConfigured, match=r"Burst: 1700000005\.0, Hourly: 1700000006\.0"
    ):
        view(factory.get("/"))


def test_clocks_that_disagree_count_each_as_drf_does():
    now = [5.0]
    view = two_throttles(lambda: now[0], lambda: now[0] + 1, "each")
    # DRF counts a request in every throttle that admits it: the hour
    # counts the burst's denials until it is full itself.
    assert statuses(view, 4) == [200, 429, 429, 429]
    now[0] += 1
    assert statuses(view, 1) == [429]


def test_drfs_cache_attribute_picks_the_store(redis_url):
    alternate = caches["redis"]
    alternate.clear()

    class Elsewhere(AnonRateThrottle):
        scope = "elsewhere"
        rate = "2/min"
        cache = alternate

    view = view_of(Elsewhere)
    assert statuses(view, 3) == [200, 200, 429]
    caches["default"].clear()
    assert statuses(view, 1) == [429]
    alternate.clear()
    assert statuses(view, 1) == [200]


def test_a_cache_that_is_not_in_caches_is_refused_naming_it():
    from django.core.cache.backends.locmem import LocMemCache

    class Stray(AnonRateThrottle):
        scope = "stray"
        rate = "2/min"
        cache = LocMemCache("stray", {})

    with pytest.raises(ImproperlyConfigured, match=r"Stray\.cache must be a cache"):
        view_of(Stray)(factory.get("/"))
