"""Exemptions: clients in an allow-list of CIDR ranges are let through
without a store call.

``exempt`` on ``RemoteAddr``, ``ProxiedRemoteAddr``, the ASGI middleware,
the FastAPI dependency and the Flask extension, and ``LUATHROTTLE["exempt"]``
for every Django throttle (Django's own, concurrency, DRF and dmr). On a
dead store exempt clients get no failure-policy answer and no event is
reported; on a live one they leave no key, while other clients are limited
as ever. Each test runs on the embedded backend and on the real Redis, sync
and async where the door is both.
"""

import ipaddress
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import override_settings
from dmr import Controller, modify
from dmr.plugins.pydantic import PydanticSerializer
from dmr.test import DMRRequestFactory
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

import luathrottle
from client_doors import (
    ASGI_DOORS,
    BUILDERS,
    DRAFT_QUOTA,
    EXEMPT,
    HOST,
    INSIDER,
    NEIGHBOUR,
    OUTSIDER,
    PROXY,
    QUOTA,
    Store,
    answers,
    asgi_statuses,
    dead,
    flask_answers,
    flask_app,
    flask_statuses,
    guarded,
    rate,
    served,
    statuses,
    store_of,
)
from luathrottle import dmr as lt_dmr
from luathrottle.django import ConcurrencyThrottle, SyncThrottle, throttle
from luathrottle.django.auth import DjangoSessionSyncAuth
from luathrottle.django.cache_keys import ProxiedRemoteAddr, RemoteAddr
from luathrottle.drf import AnonRateThrottle


@pytest.fixture(params=["memory", "redis"])
def store(request, clock) -> Store:
    return store_of(request, clock)


@pytest.fixture(params=["sync", "async"])
def mode(request) -> str:
    return request.param


@pytest.fixture
def events() -> Iterator[list[Any]]:
    """Every decision the process's observers hear of."""
    seen: list[Any] = []
    luathrottle.add_observer(seen.append)
    yield seen
    luathrottle.remove_observer(seen.append)


# --- the cache keys' exempt ------------------------------------------------------


async def test_exempt_clients_leave_no_key_and_others_are_limited(
    mode, store, rf, clock
):
    key = RemoteAddr(exempt=EXEMPT)
    view = guarded(mode, rate(mode, key, store.backend(mode), clock))
    exempt = await answers(view, rf, INSIDER, HOST, f"::ffff:{INSIDER}", INSIDER)
    assert [response.status_code for response in exempt] == [200] * 4
    assert all(QUOTA not in response for response in exempt)
    assert store.keys() == 0
    others = await statuses(view, rf, OUTSIDER, OUTSIDER, "2001:db8:2::1")
    assert others == [200, 429, 200]
    assert store.keys() == 2


async def test_exempt_clients_never_reach_a_dead_store(mode, rf, events):
    key = RemoteAddr(exempt=EXEMPT)
    view = guarded(mode, rate(mode, key, dead(mode), None, on_failure="deny"))
    assert await statuses(view, rf, INSIDER, NEIGHBOUR) == [200, 200]
    assert events == []
    assert await statuses(view, rf, OUTSIDER) == [503]
    assert [event.outcome for event in events] == [luathrottle.Outcome.FAILED_CLOSED]


async def test_proxied_exempt_is_matched_against_the_client_found(
    mode, store, rf, clock
):
    key = ProxiedRemoteAddr([PROXY], num_proxies=1, exempt=EXEMPT)
    view = guarded(mode, rate(mode, key, store.backend(mode), clock))
    for _ in range(2):
        assert await statuses(view, rf, PROXY, HTTP_X_FORWARDED_FOR=INSIDER) == [200]
    assert store.keys() == 0
    # The proxy's own address is not exempt, so neither is what it forwards.
    forwarded = [
        await statuses(view, rf, PROXY, HTTP_X_FORWARDED_FOR=OUTSIDER) for _ in "ab"
    ]
    assert forwarded == [[200], [429]]


@pytest.mark.parametrize("door", sorted(BUILDERS))
@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("10.0.0.0/8", TypeError, "exempt must be a list"),
        (None, TypeError, "exempt must be a list"),
        (["10.0.0.0/8", "nope"], ValueError, "exempt holds 'nope'"),
        (["10.0.0.1/8"], ValueError, "exempt holds '10.0.0.1/8'"),
        ([167772161], TypeError, "exempt must hold IP addresses or networks, got int"),
        (["::ffff:10.0.0.0/104"], ValueError, "exempt holds .* an IPv4-mapped network"),
    ],
)
def test_bad_exempt_lists_are_named(door, value, error, match):
    with pytest.raises(error, match=match):
        BUILDERS[door](exempt=value)


# --- the ASGI middleware and the FastAPI dependency ---------------------------


@pytest.fixture(params=sorted(ASGI_DOORS))
def asgi(request):
    return ASGI_DOORS[request.param]


async def test_asgi_exempt_clients_leave_no_key(asgi, store, clock):
    app = asgi(store.asynchronous, clock, exempt=EXEMPT)
    exempt = await served(app, INSIDER, HOST, INSIDER, NEIGHBOUR)
    assert [response.status_code for response in exempt] == [200] * 4
    assert all(DRAFT_QUOTA not in response.headers for response in exempt)
    assert store.keys() == 0
    assert await asgi_statuses(app, OUTSIDER, OUTSIDER) == [200, 429]
    assert store.keys() == 1


async def test_asgi_exempt_clients_never_reach_a_dead_store(asgi, events):
    app = asgi(dead("async"), None, exempt=EXEMPT, on_failure="deny")
    assert await asgi_statuses(app, INSIDER, NEIGHBOUR) == [200, 200]
    assert events == []
    assert await asgi_statuses(app, OUTSIDER) == [503]
    assert [event.outcome for event in events] == [luathrottle.Outcome.FAILED_CLOSED]


async def test_asgi_exempt_holds_whatever_the_key(asgi, store, clock):
    app = asgi(store.asynchronous, clock, key=lambda request: "all", exempt=EXEMPT)
    found = await asgi_statuses(app, INSIDER, OUTSIDER, INSIDER, "2001:db8:2::1")
    assert found == [200, 200, 200, 429]
    assert store.keys() == 1


# --- the Flask extension ------------------------------------------------------


def test_flask_exempt_clients_leave_no_key(store):
    app = flask_app(store.sync, exempt=EXEMPT)
    exempt = flask_answers(app, INSIDER, HOST, INSIDER, NEIGHBOUR)
    assert [response.status_code for response in exempt] == [200] * 4
    assert all("RateLimit" not in response.headers for response in exempt)
    assert store.keys() == 0
    assert flask_statuses(app, OUTSIDER, OUTSIDER) == [200, 429]
    assert store.keys() == 1


def test_flask_exempt_holds_whatever_the_key(store):
    app = flask_app(store.sync, key=lambda: "all", exempt=EXEMPT)
    found = flask_statuses(app, INSIDER, OUTSIDER, INSIDER, "2001:db8:2::1")
    assert found == [200, 200, 200, 429]
    assert store.keys() == 1


def test_flask_exempt_clients_never_reach_a_dead_store(events):
    app = flask_app(dead("sync"), exempt=EXEMPT, on_failure="deny")
    assert flask_statuses(app, INSIDER, NEIGHBOUR) == [200, 200]
    assert events == []
    assert flask_statuses(app, OUTSIDER) == [503]
    assert [event.outcome for event in events] == [luathrottle.Outcome.FAILED_CLOSED]


# --- LUATHROTTLE["exempt"], for every Django throttle ---------------------------


@pytest.fixture
def exempt_settings() -> Iterator[None]:
    with override_settings(LUATHROTTLE={"allow_unsafe_cache": None, "exempt": EXEMPT}):
        yield


def django_view(mode: str, backend: Any, clock: Any, on_failure: str) -> Any:
    return guarded(mode, rate(mode, None, backend, clock, on_failure=on_failure))


def concurrency_view(mode: str, backend: Any, clock: Any, on_failure: str) -> Any:
    slots = ConcurrencyThrottle(1, lease=60, backend=backend, on_failure=on_failure)
    return guarded(mode, slots)


def drf_view(mode: str, backend: Any, clock: Any, on_failure: str) -> Any:
    anon = type(
        "ExemptAnon",
        (AnonRateThrottle,),
        {
            "backend": backend,
            "rate": "1/minute",
            "on_failure": on_failure,
            "clock": staticmethod(clock) if clock else None,
        },
    )

    class View(APIView):
        throttle_classes = (anon,)

        def get(self, request: Any) -> Response:
            return Response({"ok": True})

    return View.as_view()


def dmr_view(mode: str, backend: Any, clock: Any, on_failure: str) -> Any:
    guard = lt_dmr.SyncThrottle(
        1, 60, backend=backend, clock=clock, on_failure=on_failure
    )

    class Endpoint(Controller[PydanticSerializer]):
        @modify(throttling=[guard])
        def get(self) -> str:
            return "inside"

    return Endpoint.as_view()


SETTINGS_DOORS = {
    "django": (django_view, ("sync", "async")),
    "concurrency": (concurrency_view, ("sync",)),
    "drf": (drf_view, ("sync",)),
    "dmr": (dmr_view, ("sync",)),
}
SETTINGS_CASES = [
    (door, mode) for door, (_, modes) in SETTINGS_DOORS.items() for mode in modes
]


def factory(door: str, rf: Any) -> Any:
    return {"drf": APIRequestFactory(), "dmr": DMRRequestFactory()}.get(door, rf)


@pytest.mark.parametrize(("door", "mode"), SETTINGS_CASES)
async def test_the_settings_exempt_every_door_from_a_dead_store(
    door, mode, rf, events, exempt_settings
):
    view = SETTINGS_DOORS[door][0](mode, dead(mode), None, "deny")
    requests = factory(door, rf)
    assert await statuses(view, requests, INSIDER, f"[{HOST}]:443") == [200, 200]
    assert events == []
    assert await statuses(view, requests, OUTSIDER) == [503]
    assert len(events) == 1


@pytest.mark.parametrize(
    ("door", "mode"), [case for case in SETTINGS_CASES if case[0] != "concurrency"]
)
async def test_the_settings_exempt_every_door_on_a_live_store(
    door, mode, store, rf, clock, exempt_settings
):
    view = SETTINGS_DOORS[door][0](mode, store.backend(mode), clock, "allow")
    requests = factory(door, rf)
    exempt = await statuses(view, requests, INSIDER, INSIDER, f"::ffff:{INSIDER}")
    assert exempt == [200] * 3
    assert store.keys() == 0
    assert await statuses(view, requests, OUTSIDER, OUTSIDER) == [200, 429]
    assert store.keys() >= 1


def test_the_settings_leave_authentication_alone(rf, exempt_settings):
    # An exempt client skips the throttles, not the auth hooks.
    guard = SyncThrottle(1, 60, backend=dead("sync"), on_failure="deny")
    view = throttle(guard, auth=[DjangoSessionSyncAuth()], allow_unsafe_cache=None)(
        lambda request: HttpResponse("inside")
    )
    request = rf.get("/", REMOTE_ADDR=INSIDER)
    request.user = SimpleNamespace(is_authenticated=False)
    assert view(request).status_code == 401


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (["10.0.0.0/8", "nope"], "LUATHROTTLE['exempt'] holds 'nope'"),
        ("10.0.0.0/8", "LUATHROTTLE['exempt'] must be a list"),
        ([10], "LUATHROTTLE['exempt'] must hold IP addresses or networks, got int"),
        (["::ffff:10.0.0.0/104"], "an IPv4-mapped network"),
    ],
)
def test_bad_settings_are_reported_by_the_system_checks(value, named):
    with override_settings(LUATHROTTLE={"exempt": value}):
        found = checks.run_checks(tags=["luathrottle"])
        with pytest.raises(ImproperlyConfigured, match=r"LUATHROTTLE\['exempt'\]"):
            guarded("sync", SyncThrottle(1, 60))
    assert [message.id for message in found] == ["luathrottle.E001"]
    assert named in found[0].msg


async def test_good_settings_pass_the_system_checks(rf):
    value = ["10.0.0.0/8", ipaddress.ip_network("2001:db8::/32"), "192.0.2.1"]
    with override_settings(LUATHROTTLE={"exempt": value, "allow_unsafe_cache": None}):
        assert checks.run_checks(tags=["luathrottle"]) == []
        guard = SyncThrottle(1, 60, backend=dead("sync"), on_failure="deny")
        view = guarded("sync", guard)
        found = await statuses(view, rf, "10.1.2.3", "192.0.2.1:80", "192.0.2.2", "x")
    assert found == [200, 200, 503, 503]
