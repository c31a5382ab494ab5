"""Rolling a limit out: shadow mode and its way back to enforcing, the
near-limit outcome, the denial log and the global off switch."""

import logging
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import RequestFactory, override_settings

import luathrottle
from luathrottle import (
    AsyncLimiter,
    ConcurrencyLimiter,
    Limit,
    Limiter,
    Outcome,
    Reason,
)
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from luathrottle.django import SyncThrottle, throttle
from luathrottle.django.cache_keys import RemoteAddr
from servers import free_port

ADDRESS = "192.0.2.7"


def dead_store() -> SyncRedis:
    return SyncRedis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", timeout=0.2, breaker=False
    )


def view_of(*guards: Any) -> Any:
    return throttle(*guards, allow_unsafe_cache=None)(lambda request: HttpResponse())


def statuses(view: Any, count: int) -> list[int]:
    rf = RequestFactory()
    return [view(rf.get("/", REMOTE_ADDR=ADDRESS)).status_code for _ in range(count)]


# --- shadow mode ------------------------------------------------------------


def test_a_shadowed_limiter_admits_what_it_would_deny():
    limiter = Limiter(2, 60, backend=MemoryBackend(), shadow=True)
    decisions = [limiter.hit("k") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.reason for d in decisions] == [None, None, Reason.SHADOW_DENIED]
    # No quota is shown for a limit on trial.
    assert {d.remaining for d in decisions} == {None}
    assert decisions[2].limits[0].reason == Reason.SHADOW_DENIED


def test_a_limit_leaves_shadow_mode_with_its_counts():
    store = MemoryBackend()
    shadowed = Limiter(["2/minute", "5/hour"], backend=store, shadow=True)
    for _ in range(4):
        assert shadowed.hit("k").allowed
    enforced = Limiter(["2/minute", "5/hour"], backend=store)
    denied = enforced.hit("k")
    assert not denied.allowed
    assert denied.reason == Reason.LIMIT_EXCEEDED


def test_the_django_setting_shadows_every_throttle_and_enforcing_keeps_counts():
    view = view_of(SyncThrottle(1, 60, backend=MemoryBackend()))
    with override_settings(LUATHROTTLE={"shadow": True, "allow_unsafe_cache": None}):
        assert statuses(view, 3) == [200, 200, 200]
    with override_settings(LUATHROTTLE={"allow_unsafe_cache": None}):
        assert statuses(view, 1) == [429]


def test_a_shadowed_throttle_never_keeps_an_enforced_one_from_counting():
    # Decided in one script call, the shadowed throttle's would-be denial
    # would stop the enforced one from counting (all or nothing): they go in
    # two calls of one round trip instead.
    store = MemoryBackend()
    enforced = SyncThrottle(3, 60, backend=store)
    # A name of its own: throttles of one window and cache key would count
    # on one counter.
    trial = SyncThrottle(
        1, 60, backend=store, shadow=True, cache_key=RemoteAddr(name="trial")
    )
    assert statuses(view_of(enforced, trial), 5) == [200, 200, 200, 429, 429]


def test_one_limit_on_trial_beside_an_enforced_one():
    events: list[Any] = []
    trial = Limit(1, 60, name="trial", shadow=True)
    limiter = Limiter(
        ["2/minute", trial], backend=MemoryBackend(), observers=[events.append]
    )
    first, second, third = (limiter.hit("k") for _ in range(3))
    assert (first.allowed, second.allowed, third.allowed) == (True, True, False)
    # In the order given: the enforced limit shows its quota, the trial none.
    assert [item.limit.name for item in second.limits] == ["2/60s", "trial"]
    assert second.limits[0].remaining == 0
    assert second.limits[1].reason == Reason.SHADOW_DENIED
    assert second.remaining == 0
    assert third.reason == Reason.LIMIT_EXCEEDED
    # Each hit is two decisions: the enforced limits', the trial's.
    assert [(e.limit, e.outcome) for e in events] == [
        ("2/60s", Outcome.ADMITTED),
        ("trial", Outcome.ADMITTED),
        ("2/60s", Outcome.ADMITTED),
        ("trial", Outcome.SHADOW_DENIED),
        ("2/60s", Outcome.DENIED),
        ("trial", Outcome.SHADOW_DENIED),
    ]


async def test_limits_on_trial_per_call_and_on_the_async_twin():
    limiter = AsyncLimiter(5, 60, backend=MemoryBackend())
    only_trial = [Limit(1, 60, shadow=True)]
    decisions = [await limiter.hit("k", limits=only_trial) for _ in range(3)]
    assert [d.reason for d in decisions] == [
        None,
        Reason.SHADOW_DENIED,
        Reason.SHADOW_DENIED,
    ]
    assert all(d.allowed for d in decisions)
    assert not (await limiter.hit("k", limits=[Limit(1, 60)])).allowed


def test_a_throttle_of_a_limit_on_trial_is_in_shadow_mode():
    guard = SyncThrottle(Limit(1, 60, shadow=True), backend=MemoryBackend())
    assert statuses(view_of(guard), 3) == [200, 200, 200]


def test_shadow_must_be_a_bool():
    with pytest.raises(TypeError, match="shadow"):
        Limiter(1, 60, shadow="yes")
    with pytest.raises(TypeError, match="shadow"):
        SyncThrottle(1, 60, shadow=1)
    with pytest.raises(TypeError, match="shadow"):
        Limit(1, 60, shadow="on")


def test_a_shadowed_concurrency_limiter_grants_without_a_slot():
    store = MemoryBackend()
    events: list[Any] = []
    slots = ConcurrencyLimiter(
        1, lease=60, backend=store, shadow=True, observers=[events.append]
    )
    first, second = slots.acquire("k"), slots.acquire("k")
    assert first.held
    assert second.allowed
    assert not second.held
    assert second.reason == Reason.SHADOW_DENIED
    assert second.release() is False
    assert first.release() is True
    assert [e.outcome for e in events] == [
        Outcome.ADMITTED,
        Outcome.SHADOW_DENIED,
        Outcome.LEASE_RELEASED,
    ]


# --- near limit ---------------------------------------------------------------


def test_near_limit_reports_the_hits_that_leave_little():
    events: list[Any] = []
    limiter = Limiter(
        10, 60, backend=MemoryBackend(), near_limit=0.3, observers=[events.append]
    )
    for _ in range(11):
        limiter.hit("k")
    assert [e.outcome for e in events] == [Outcome.ADMITTED] * 7 + [
        Outcome.NEAR_LIMIT
    ] * 3 + [Outcome.DENIED]
    assert [e.remaining for e in events[6:10]] == [3, 2, 1, 0]


def test_the_django_setting_gives_throttles_their_near_limit():
    events: list[Any] = []
    luathrottle.add_observer(events.append)
    try:
        own = SyncThrottle(4, 60, backend=MemoryBackend(), near_limit=0.5)
        unset = SyncThrottle(4, 60, backend=MemoryBackend())
        settings = {"near_limit": 0.25, "allow_unsafe_cache": None}
        with override_settings(LUATHROTTLE=settings):
            statuses(view_of(own), 4)
            statuses(view_of(unset), 4)
    finally:
        luathrottle.remove_observer(events.append)
    outcomes = [e.outcome for e in events]
    near, admitted = Outcome.NEAR_LIMIT, Outcome.ADMITTED
    assert outcomes == [admitted, admitted, near, near] + [admitted] * 3 + [near]


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, True, "0.2"])
def test_near_limit_must_be_a_fraction(value):
    with pytest.raises((TypeError, ValueError), match="near_limit"):
        Limiter(1, 60, near_limit=value)


def test_a_bad_near_limit_setting_names_itself():
    with (
        override_settings(LUATHROTTLE={"near_limit": 2}),
        pytest.raises(ImproperlyConfigured, match="near_limit"),
    ):
        view_of(SyncThrottle(1, 60, backend=MemoryBackend()))


# --- the denial log -------------------------------------------------------------


def test_each_denial_is_one_structured_record(caplog):
    limiter = Limiter(1, 60, backend=MemoryBackend())
    with caplog.at_level(logging.INFO, logger="luathrottle"):
        for _ in range(3):
            limiter.hit("alice@example.com")
    records = [
        r for r in caplog.records if r.getMessage().startswith("luathrottle denied")
    ]
    assert len(records) == 2
    key = limiter.state_keys("alice@example.com")[0]
    for record in records:
        assert record.levelno == logging.INFO
        assert (record.limit, record.door, record.algorithm) == (
            "1/60s",
            "limiter",
            "fixed_window",
        )
        assert record.outcome == "denied"
        assert record.key == key
        assert 0 < record.retry_after <= 60
        assert record.suppressed == 0
        assert "alice" not in record.getMessage()


def test_the_denial_log_is_rate_limited_and_says_what_it_left_out(caplog, monkeypatch):
    now = [5000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    limiter = Limiter(1, 60, backend=MemoryBackend(clock=lambda: 1_800_000_000.0))
    limiter.hit("k")
    with caplog.at_level(logging.INFO, logger="luathrottle"):
        for _ in range(50):
            limiter.hit("k")
        now[0] += 1.0
        limiter.hit("k")
    records = [r for r in caplog.records if hasattr(r, "suppressed")]
    assert len(records) == 11
    assert [r.suppressed for r in records] == [0] * 10 + [40]
    assert "40 denials before this one were not logged" in records[-1].getMessage()


def test_shadow_denials_and_refused_leases_are_logged(caplog):
    with caplog.at_level(logging.INFO, logger="luathrottle"):
        shadowed = Limiter(1, 60, backend=MemoryBackend(), shadow=True)
        shadowed.hit("k"), shadowed.hit("k")
        slots = ConcurrencyLimiter(1, lease=60, backend=MemoryBackend())
        slots.acquire("k"), slots.acquire("k")
    outcomes = [r.outcome for r in caplog.records if hasattr(r, "outcome")]
    assert outcomes == ["shadow_denied", "lease_refused"]


def test_nothing_is_logged_when_info_is_off(caplog):
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        limiter = Limiter(1, 60, backend=MemoryBackend())
        limiter.hit("k"), limiter.hit("k")
    assert not [r for r in caplog.records if hasattr(r, "outcome")]


# --- the off switch ---------------------------------------------------------------


def test_the_django_setting_switches_limiting_off_everywhere():
    store = dead_store()
    events: list[Any] = []
    luathrottle.add_observer(events.append)
    try:
        limiter = Limiter(1, 60, backend=store)
        view = view_of(SyncThrottle(1, 60, backend=store, on_failure="deny"))
        slots = ConcurrencyLimiter(1, lease=60, backend=store)
        settings = {"enabled": False, "allow_unsafe_cache": None}
        with override_settings(LUATHROTTLE=settings):
            # A dead store under "raise" and "deny": nothing calls it.
            decisions = [limiter.hit("k") for _ in range(3)]
            assert statuses(view, 3) == [200, 200, 200]
            lease = slots.acquire("k")
        with pytest.raises(luathrottle.BackendError):
            limiter.hit("k")
    finally:
        luathrottle.remove_observer(events.append)
    assert {(d.allowed, d.reason, d.remaining) for d in decisions} == {
        (True, Reason.DISABLED, None)
    }
    assert lease.allowed
    assert not lease.held
    assert lease.reason == Reason.DISABLED
    # Switched off, nothing is decided, so nothing is reported; the last
    # hit raised before any report, as "raise" does.
    assert events == []


def test_a_disabled_response_has_no_quota_headers():
    view = view_of(SyncThrottle(1, 60, backend=MemoryBackend()))
    with override_settings(LUATHROTTLE={"enabled": False, "allow_unsafe_cache": None}):
        response = view(RequestFactory().get("/", REMOTE_ADDR=ADDRESS))
    assert response.status_code == 200
    names = [name.lower() for name, _ in response.items()]
    assert not [name for name in names if name.startswith(("x-ratelimit", "retry"))]


def test_enabled_must_be_a_bool():
    with (
        override_settings(LUATHROTTLE={"enabled": "no"}),
        pytest.raises(ImproperlyConfigured, match="enabled"),
    ):
        view_of(SyncThrottle(1, 60, backend=MemoryBackend()))


SWITCHED_OFF = """
import luathrottle
from luathrottle import Limiter, ConcurrencyLimiter
from luathrottle.backends.redis import SyncRedis
store = SyncRedis.from_url("redis://127.0.0.1:{port}/0", timeout=0.2, breaker=False)
limiter = Limiter(1, 60, backend=store)
print([str(limiter.hit("k").reason) for _ in range(3)])
print(ConcurrencyLimiter(1, lease=5, backend=store).acquire("k").reason)
"""


@pytest.mark.parametrize("value", ["0", "false", "OFF"])
def test_the_environment_switches_limiting_off(value):
    script = SWITCHED_OFF.format(port=free_port())
    env = {**os.environ, "LUATHROTTLE_ENABLED": value}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == [
        "['disabled', 'disabled', 'disabled']",
        "disabled",
    ]


def test_the_environment_wins_over_the_django_setting():
    script = (
        "import django; from django.conf import settings; "
        "settings.configure(LUATHROTTLE={'enabled': True}, "
        "INSTALLED_APPS=['luathrottle.django']); "
        "django.setup(); "
        "from luathrottle import Limiter; "
        "print(Limiter(1, 60).hit('k').reason)"
    )
    env = {**os.environ, "LUATHROTTLE_ENABLED": "0"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "disabled"


def test_a_bad_environment_value_fails_at_import_naming_the_variable():
    env = {**os.environ, "LUATHROTTLE_ENABLED": "maybe"}
    done = subprocess.run(
        [sys.executable, "-c", "import luathrottle"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "LUATHROTTLE_ENABLED" in done.stderr
    assert "'maybe'" in done.stderr
