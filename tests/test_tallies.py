"""Tallies: an admitted hit is told to observers that only count by their
tallies, without an event, when every observer listening has a
``tally_for``; everything else, and every hit when one listener has none,
is told as an event. Both tell the same counts."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

import luathrottle
from luathrottle import Limiter, Outcome
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from luathrottle.django import SyncThrottle, throttle
from luathrottle.django.signals import request_throttled
from test_prometheus import dead_store


class Tally:
    """One tuple of labels' hits, as the engine hands them over."""

    def __init__(self, counting, labels, most):
        self.counting, self.labels, self.most = counting, labels, most
        self.pending = []

    def fold(self):
        if self.counting.fail:
            raise RuntimeError("tally broke")
        taken = self.pending[:]
        del self.pending[: len(taken)]
        self.counting.tallied.extend((*self.labels, latency) for latency in taken)


class Counting:
    """An observer that counts: what it was told, by its tallies or as an
    event. Its tallies fold every ``most`` hits."""

    def __init__(self, fail=False, most=1):
        self.tallied = []
        self.events = []
        self.tallies = {}
        self.fail = fail
        self.most = most

    def __call__(self, event):
        self.events.append(event)

    def tally_for(self, *labels):
        if labels not in self.tallies:
            self.tallies[labels] = Tally(self, labels, self.most)
        return self.tallies[labels]

    def outcomes(self):
        told = [labels[3] for labels in self.tallied]
        return told + [event.outcome for event in self.events]


@pytest.fixture
def counting():
    observer = Counting()
    luathrottle.add_observer(observer)
    yield observer
    luathrottle.remove_observer(observer)


@pytest.fixture(params=["memory", "redis"])
def backend(request):
    if request.param == "memory":
        return MemoryBackend()
    return SyncRedis(request.getfixturevalue("redis_client"))


def test_admitted_hits_are_tallied_and_denials_are_events(counting, backend):
    limiter = Limiter(2, 60, backend=backend, prefix=f"tally:{id(counting)}")
    for _ in range(3):
        limiter.hit("k")
    assert [labels[:4] for labels in counting.tallied] == [
        ("limiter", "2/60s", "fixed_window", Outcome.ADMITTED)
    ] * 2
    # Each tally carries its store call's time.
    assert all(labels[4] > 0 for labels in counting.tallied)
    assert [event.outcome for event in counting.events] == [Outcome.DENIED]
    assert limiter.peek("k").remaining == 0


def test_a_listener_without_a_tally_has_every_hit_told_as_an_event(counting):
    events = []
    luathrottle.add_observer(events.append)
    try:
        limiter = Limiter(2, 60, backend=MemoryBackend())
        for _ in range(3):
            limiter.hit("k")
    finally:
        luathrottle.remove_observer(events.append)
    assert counting.tallied == []
    assert counting.outcomes() == [e.outcome for e in events]
    assert counting.outcomes() == ["admitted", "admitted", "denied"]


def test_own_observers_are_tallied_unless_one_has_no_tally():
    own = Counting()
    events = []
    alone = Limiter(2, 60, backend=MemoryBackend(), observers=[own])
    mixed = Limiter(2, 60, backend=MemoryBackend(), observers=[own, events.append])
    for limiter in (alone, mixed):
        for _ in range(2):
            limiter.hit("k")
    assert len(own.tallied) == 2
    assert [event.outcome for event in own.events] == ["admitted"] * 2
    assert len(events) == 2


def test_peeks_are_never_told(counting):
    limiter = Limiter(2, 60, backend=MemoryBackend())
    limiter.peek("k")
    limiter.hit("k")
    limiter.peek("k")
    assert counting.outcomes() == ["admitted"]


def test_near_limit_shadow_and_failures_are_told_with_their_outcomes(counting):
    near = Limiter(4, 600, backend=MemoryBackend(), near_limit=0.5)
    shadowed = Limiter(1, 60, backend=MemoryBackend(), shadow=True)
    failing = Limiter(1, 60, backend=dead_store(), on_failure="allow")
    for _ in range(4):
        near.hit("k")
    for _ in range(2):
        shadowed.hit("k")
    failing.hit("k")
    assert [labels[3] for labels in counting.tallied] == [
        "admitted",
        "admitted",
        "near_limit",
        "near_limit",
    ]
    # Shadowed checks are told by events, their admitted hits too, and so
    # are the failure policy's decisions.
    assert [event.outcome for event in counting.events] == [
        "admitted",
        "shadow_denied",
        "failed_open",
    ]


def test_a_tally_that_raises_is_logged_and_the_hit_goes_on(caplog):
    broken, counting = Counting(fail=True), Counting()
    limiter = Limiter(1, 60, backend=MemoryBackend(), observers=[broken, counting])
    with caplog.at_level(logging.ERROR, logger="luathrottle"):
        assert limiter.hit("k").allowed
    assert len(counting.tallied) == 1
    assert "tally" in caplog.text
    assert "tally broke" in caplog.text


def test_a_django_door_tallies_too_while_signals_are_connected(counting):
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs["event"].outcome)

    request_throttled.connect(receiver)
    try:
        guard = SyncThrottle(2, 60, backend=MemoryBackend())
        view = throttle(guard, allow_unsafe_cache=None)(lambda r: HttpResponse())
        request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.77")
        statuses = [view(request).status_code for _ in range(3)]
    finally:
        request_throttled.disconnect(receiver)
    assert statuses == [200, 200, 429]
    assert [labels[:4] for labels in counting.tallied] == [
        ("django", "RemoteAddr", "fixed_window", Outcome.ADMITTED)
    ] * 2
    assert [event.outcome for event in counting.events] == ["denied"]
    assert received == ["denied"]


def test_a_tally_is_folded_once_it_holds_its_most():
    own = Counting(most=3)
    limiter = Limiter(100, 60, backend=MemoryBackend(), observers=[own])
    for _ in range(7):
        limiter.hit("k")
    # Two folds of three; the seventh hit waits in the tally.
    assert len(own.tallied) == 6
    (tally,) = own.tallies.values()
    assert len(tally.pending) == 1
    assert tally.labels == ("limiter", "100/60s", "fixed_window", Outcome.ADMITTED)


def test_an_observer_added_later_gets_its_own_tallies(counting):
    limiter = Limiter(100, 60, backend=MemoryBackend())
    limiter.hit("k")
    later = Counting()
    luathrottle.add_observer(later)
    try:
        limiter.hit("k")
    finally:
        luathrottle.remove_observer(later)
    limiter.hit("k")
    assert len(counting.tallied) == 3
    assert len(later.tallied) == 1


def test_a_tally_for_that_raises_is_logged_and_the_others_still_count(caplog):
    class Broken(Counting):
        def tally_for(self, *labels):
            raise RuntimeError("no tally here")

    counting = Counting()
    limiter = Limiter(5, 60, backend=MemoryBackend(), observers=[Broken(), counting])
    with caplog.at_level(logging.ERROR, logger="luathrottle"):
        assert limiter.hit("k").allowed
        assert limiter.hit("k").allowed
    assert len(counting.tallied) == 2
    assert "no tally here" in caplog.text


def test_each_hit_is_tallied_by_the_limit_that_decided_it(counting):
    limiter = Limiter(100, 60, backend=MemoryBackend())
    limiter.hit("k")
    limiter.hit("k", limits="7/minute")
    limiter.hit("k")
    limiter.hit("k", limits=["7/minute", "1000/hour"])
    limiter.hit("k")
    assert [labels[1] for labels in counting.tallied] == [
        "100/60s",
        "7/60s",
        "100/60s",
        "7/60s",
        "100/60s",
    ]


# In a fresh process: deciders made before any observer, a decider with
# observers of its own made later, and process observers added and taken
# away. Who listens must be heard at each step, whatever the engine
# remembers of the process being quiet.
QUIET_SCENARIO = """
import luathrottle
from luathrottle import Limiter
from luathrottle.backends.memory import MemoryBackend

heard = []
plain = Limiter(100, 60, backend=MemoryBackend())
plain.hit("k")
luathrottle.add_observer(heard.append)
plain.hit("k")
luathrottle.remove_observer(heard.append)
plain.hit("k")
own = []
watched = Limiter(100, 60, backend=MemoryBackend(), observers=[own.append])
watched.hit("k")
plain.hit("k")
luathrottle.add_observer(heard.append)
plain.hit("k")
print(len(heard), len(own))
"""


def test_observers_are_heard_however_quiet_the_process_was():
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", QUIET_SCENARIO],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The process's observer heard the two hits made while it was in; the
    # limiter's own heard its one hit.
    assert result.stdout.split() == ["2", "1"]
