"""``luathrottle.drf`` to DRF's letter: ``BaseThrottle`` ports by import,
each subclass keeps its own scope, and every rate luathrottle documents or
DRF reads works in ``DEFAULT_THROTTLE_RATES``, while anything else is
refused at start-up, naming the setting."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from rest_framework import throttling as drf_throttling

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
    assert UserRateThrottle.scope == "user"
    assert AnonRateThrottle.scope == "anon"
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
