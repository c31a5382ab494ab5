"""Client identity at every door: an IPv6 client counts as its /64 network
(``ipv6_prefix`` changes it), an IPv4 client as its address.

The Django cache keys (``RemoteAddr``, ``ProxiedRemoteAddr``, also on dmr),
the ASGI middleware, the FastAPI dependency and the Flask extension count
alike. Each door test
runs on the embedded backend and on the real Redis, sync and async where
the door is both, and counts the keys the store holds.
"""

import ipaddress
from types import SimpleNamespace

import pytest
from django.test import override_settings
from dmr import Controller, modify
from dmr.plugins.pydantic import PydanticSerializer
from dmr.test import DMRRequestFactory

from client_doors import (
    ASGI_DOORS,
    BUILDERS,
    EXEMPT,
    HOST,
    INSIDER,
    NEIGHBOUR,
    NEXT_64,
    PROXY,
    Store,
    asgi_statuses,
    flask_app,
    flask_statuses,
    guarded,
    rate,
    statuses,
    store_of,
)
from luathrottle import dmr as lt_dmr
from luathrottle.asgi import client_address
from luathrottle.django.cache_keys import ProxiedRemoteAddr, RemoteAddr
from luathrottle.fastapi import client_host
from luathrottle.flask import remote_address


@pytest.fixture(params=["memory", "redis"])
def store(request, clock) -> Store:
    return store_of(request, clock)


@pytest.fixture(params=["sync", "async"])
def mode(request) -> str:
    return request.param


# --- Django views --------------------------------------------------------------


async def test_ipv6_clients_of_one_64_share_a_quota(mode, store, rf, clock):
    view = guarded(mode, rate(mode, RemoteAddr(), store.backend(mode), clock))
    found = await statuses(view, rf, HOST, NEIGHBOUR, f"[{NEIGHBOUR}]:443", NEXT_64)
    assert found == [200, 429, 429, 200]
    assert store.keys() == 2


async def test_ipv6_prefix_128_counts_each_address(mode, store, rf, clock):
    key = RemoteAddr(ipv6_prefix=128)
    view = guarded(mode, rate(mode, key, store.backend(mode), clock))
    assert await statuses(view, rf, HOST, NEIGHBOUR, HOST) == [200, 200, 429]
    assert store.keys() == 2


async def test_a_shorter_prefix_joins_networks(mode, store, rf, clock):
    key = RemoteAddr(ipv6_prefix=48)
    view = guarded(mode, rate(mode, key, store.backend(mode), clock))
    assert await statuses(view, rf, HOST, NEXT_64, "2001:db8:2::1") == [200, 429, 200]
    assert store.keys() == 2


async def test_proxied_clients_are_bucketed_too(mode, store, rf, clock):
    key = ProxiedRemoteAddr([PROXY], num_proxies=1)
    view = guarded(mode, rate(mode, key, store.backend(mode), clock))
    behind = [
        await statuses(view, rf, PROXY, HTTP_X_FORWARDED_FOR=client)
        for client in (HOST, NEIGHBOUR, NEXT_64)
    ]
    assert behind == [[200], [429], [200]]
    assert store.keys() == 2


async def test_dmr_counts_luathrottle_keys_alike(store, clock):
    guard = lt_dmr.SyncThrottle(
        1, 60, cache_key=RemoteAddr(exempt=[INSIDER]), backend=store.sync, clock=clock
    )
    with override_settings(LUATHROTTLE={"allow_unsafe_cache": None}):

        class Endpoint(Controller[PydanticSerializer]):
            @modify(throttling=[guard])
            def get(self) -> str:
                return "inside"

    view = Endpoint.as_view()
    found = await statuses(view, DMRRequestFactory(), HOST, NEIGHBOUR, INSIDER, INSIDER)
    assert found == [200, 429, 200, 200]
    assert store.keys() == 1


# --- the ASGI middleware and the FastAPI dependency ---------------------------


@pytest.fixture(params=sorted(ASGI_DOORS))
def asgi(request):
    return ASGI_DOORS[request.param]


async def test_asgi_ipv6_clients_of_one_64_share_a_quota(asgi, store, clock):
    app = asgi(store.asynchronous, clock)
    assert await asgi_statuses(app, HOST, NEIGHBOUR, NEXT_64) == [200, 429, 200]
    assert store.keys() == 2


async def test_asgi_ipv6_prefix_128_counts_each_address(asgi, store, clock):
    app = asgi(store.asynchronous, clock, ipv6_prefix=128)
    assert await asgi_statuses(app, HOST, NEIGHBOUR, HOST) == [200, 200, 429]
    assert store.keys() == 2


# --- the Flask extension ------------------------------------------------------


def test_flask_ipv6_clients_of_one_64_share_a_quota(store):
    app = flask_app(store.sync)
    assert flask_statuses(app, HOST, NEIGHBOUR, NEXT_64) == [200, 429, 200]
    assert store.keys() == 2


def test_flask_ipv6_prefix_128_counts_each_address(store):
    app = flask_app(store.sync, ipv6_prefix=128)
    assert flask_statuses(app, HOST, NEIGHBOUR, HOST) == [200, 200, 429]
    assert store.keys() == 2


# --- the identities, and bad arguments ----------------------------------------


@pytest.mark.parametrize(
    ("address", "prefix", "expected"),
    [
        ("2001:DB8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("[2001:db8:1:2::7]:443", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2::7", 56, "2001:db8:1::/56"),
        ("2001:db8:1:2::7", 128, "2001:db8:1:2::7"),
        ("2001:db8:1:2::7", 1, "::/1"),
        ("::ffff:192.0.2.1", 64, "192.0.2.1"),
        ("192.0.2.1:80", 1, "192.0.2.1"),
        ("not an address", 64, "not an address"),
    ],
)
def test_what_a_client_counts_as(address, prefix, expected):
    request = SimpleNamespace(META={"REMOTE_ADDR": address})
    assert RemoteAddr(ipv6_prefix=prefix)(request) == expected
    behind = SimpleNamespace(
        META={"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": address}
    )
    proxied = ProxiedRemoteAddr([PROXY], 1, ipv6_prefix=prefix)(behind)
    assert proxied == (PROXY if expected == "not an address" else expected)


def test_the_default_keys_of_the_asgi_doors_count_alike():
    scope = {"type": "http", "client": (NEIGHBOUR, 1)}
    assert client_address(scope) == "2001:db8:1:2::/64"
    request = SimpleNamespace(client=SimpleNamespace(host=NEIGHBOUR))
    assert client_host(request) == "2001:db8:1:2::/64"
    app = flask_app(None)
    with app.test_request_context(environ_base={"REMOTE_ADDR": NEIGHBOUR}):
        assert remote_address() == "2001:db8:1:2::/64"


def test_keys_keep_their_options_and_compare_by_them():
    networks = ["192.0.2.0/24", ipaddress.ip_network("fd00::/8")]
    key = RemoteAddr(ipv6_prefix=56, exempt=networks)
    assert key.ipv6_prefix == 56
    assert [str(network) for network in key.exempt] == ["192.0.2.0/24", "fd00::/8"]
    assert key == RemoteAddr(ipv6_prefix=56, exempt=["192.0.2.0/24", "fd00::/8"])
    assert key != RemoteAddr(ipv6_prefix=56)
    assert "ipv6_prefix=56" in repr(key)
    assert "_clients" not in repr(key)


@pytest.mark.parametrize("door", sorted(BUILDERS))
@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (0, ValueError, "ipv6_prefix must be between 1 and 128"),
        (129, ValueError, "ipv6_prefix must be between 1 and 128"),
        (True, TypeError, "ipv6_prefix must be an int"),
        ("64", TypeError, "ipv6_prefix must be an int"),
        (None, TypeError, "ipv6_prefix must be an int"),
    ],
)
def test_bad_ipv6_prefixes_are_named(door, value, error, match):
    with pytest.raises(error, match=match):
        BUILDERS[door](ipv6_prefix=value)


def test_a_prefix_given_with_a_key_of_ones_own_is_refused():
    own = lambda request: "everyone"  # noqa: E731
    for door in ("RateLimitMiddleware", "Throttle", "flask.Throttle"):
        with pytest.raises(ValueError, match="drop ipv6_prefix=56"):
            BUILDERS[door](key=own, ipv6_prefix=56)
        BUILDERS[door](key=own, exempt=EXEMPT)
