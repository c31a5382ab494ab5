"""Hostile and bad request input, through real views.

Every input has a defined outcome (the throttle counts it, or skips it as
the cache key's docstring says), never a 500 or an exception; distinct
identities never share a counter; and every state key written stays short,
whatever the client sent.

Each view test runs sync and async, on a function view (``@throttle``) and
on a ``ThrottledView``, on the MemoryBackend and on the real Redis. Time
moves only through the throttles' clock.
"""

import inspect
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from django.http import HttpResponse

from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import (
    AsyncThrottle,
    Rate,
    SyncThrottle,
    ThrottledView,
    throttle,
)
from luathrottle.django.cache_keys import (
    BaseThrottleCacheKey,
    JwtToken,
    ProxiedRemoteAddr,
    RemoteAddr,
)
from states import read_state, store_keys

MAX_KEY_LENGTH = 100
COUNTED = [200, 429]
SKIPPED = [200, 200]
MISSING = object()
PROXY = "10.0.0.1"
ATTACKER = "198.51.100.7"
VICTIM = "203.0.113.9"


@dataclass
class Store:
    """A backend, and a sync client of its Redis to read keys back with."""

    backend: Any
    client: Any = None

    def assert_holds_exactly(self, keys: set[str]) -> None:
        """The store holds the states named ``keys`` and no other key."""
        where = self.backend if self.client is None else self.client
        assert all(read_state(where, key) for key in keys)
        if self.client is not None:
            stored = {key.decode() for key in self.client.scan_iter(count=1000)}
            assert stored == store_keys(keys)
        else:
            assert self.backend.command("DBSIZE") == len(store_keys(keys))


@pytest.fixture(params=["sync", "async"])
def mode(request) -> str:
    return request.param


@pytest.fixture(params=["function", "class"])
def kind(request) -> str:
    return request.param


@pytest.fixture(params=["memory", "redis"])
def store(request, mode, clock) -> Store:
    if request.param == "memory":
        return Store(MemoryBackend(clock=clock))
    client = request.getfixturevalue("redis_client")
    if mode == "sync":
        return Store(SyncRedis(client), client)
    return Store(AsyncRedis(request.getfixturevalue("async_redis_client")), client)


def ok(request):
    return HttpResponse("inside")


async def aok(request):
    return HttpResponse("inside")


class SyncHostile(ThrottledView):
    throttling_allow_unsafe_cache = None

    def get(self, request):
        return ok(request)


class AsyncHostile(ThrottledView):
    throttling_allow_unsafe_cache = None

    async def get(self, request):
        return await aok(request)


@dataclass
class Site:
    """Builds throttles, views and requests of one mode, kind and store."""

    mode: str
    kind: str
    store: Store
    clock: Any
    factory: Any

    def throttle(self, cache_key: BaseThrottleCacheKey, max_requests: int = 1) -> Any:
        # A scope of its own makes call()'s keys independent of the view.
        twin = SyncThrottle if self.mode == "sync" else AsyncThrottle
        return twin(
            max_requests,
            Rate.minute,
            cache_key=cache_key,
            backend=self.store.backend,
            clock=self.clock,
            scope="hostile",
        )

    def view(self, *throttles: Any) -> Any:
        if self.kind == "function":
            handler = ok if self.mode == "sync" else aok
            return throttle(*throttles, allow_unsafe_cache=None)(handler)
        base = SyncHostile if self.mode == "sync" else AsyncHostile
        attributes = {"throttling": throttles, "__module__": __name__}
        return type(base.__name__, (base,), attributes).as_view()

    def request(self, remote_addr: object = MISSING, **attributes: Any) -> Any:
        """A GET whose REMOTE_ADDR is ``remote_addr`` (absent if MISSING);
        upper-case ``attributes`` go into META, others onto the request."""
        request = self.factory.get("/")
        del request.META["REMOTE_ADDR"]
        if remote_addr is not MISSING:
            request.META["REMOTE_ADDR"] = remote_addr
        for name, value in attributes.items():
            if name.isupper():
                request.META[name] = value
            else:
                setattr(request, name, value)
        return request

    async def statuses(self, view: Any, requests: Iterable[Any]) -> list[int]:
        codes = []
        for request in requests:
            response = view(request)
            if inspect.isawaitable(response):
                response = await response
            codes.append(response.status_code)
        return codes

    def assert_keys(self, guard: Any, requests: Iterable[Any]) -> set[str]:
        """Assert the store holds exactly the keys ``guard`` counts
        ``requests`` on, each short and with one hash tag; return them."""
        found = (guard.state_key(request, "") for request in requests)
        keys = {key for key in found if key is not None}
        self.store.assert_holds_exactly(keys)
        for key in keys:
            assert len(key) <= MAX_KEY_LENGTH
            assert key.isascii()
            assert key.count("{") == key.count("}") == 1
        return keys


@pytest.fixture
def site(mode, kind, store, clock, rf, async_rf) -> Site:
    return Site(mode, kind, store, clock, rf if mode == "sync" else async_rf)


# REMOTE_ADDR, as RemoteAddr reads it.


@pytest.mark.parametrize(
    ("addresses", "expected", "identities"),
    [
        ([MISSING, MISSING], SKIPPED, 0),
        (["", ""], SKIPPED, 0),
        ([" \t", " \t"], SKIPPED, 0),
        (["garbage \x00 \udcff {tag}"] * 2, COUNTED, 1),
        (["9" * 100_000] * 2, COUNTED, 1),
        (["x" * 10_000, "x" * 9_999 + "y"], SKIPPED, 2),
        (["2001:DB8::1", "2001:db8:0:0:0:0:0:1"], COUNTED, 1),
        (["::ffff:192.0.2.1", "192.0.2.1"], COUNTED, 1),
        (["::ffff:192.0.2.1", "::ffff:192.0.2.2"], SKIPPED, 2),
        (["2001:db8::1", "2001:db8::2"], COUNTED, 1),
        (["2001:db8:0:1::1", "2001:db8:0:2::1"], SKIPPED, 2),
        (["192.0.2.1:5001", "192.0.2.1:5002"], COUNTED, 1),
        (["192.0.2.1:5001", "192.0.2.1"], COUNTED, 1),
        (["[2001:DB8::1]:443", "2001:db8::1"], COUNTED, 1),
        (["[2001:db8::1]", "[2001:db8::1]:80"], COUNTED, 1),
        (["[::ffff:192.0.2.1]:80", "192.0.2.1:81"], COUNTED, 1),
        (["[192.0.2.1]:80", "[192.0.2.1]:81"], SKIPPED, 2),
        (["192.0.2.1:123456", "192.0.2.1:123457"], SKIPPED, 2),
        (["192.0.2.1:", "192.0.2.1"], SKIPPED, 2),
    ],
    ids=[
        "missing",
        "empty",
        "blank",
        "garbage",
        "very-long",
        "long-neighbours",
        "ipv6-spellings",
        "ipv4-mapped-is-ipv4",
        "ipv4-mapped-apart",
        "ipv6-one-64",
        "ipv6-apart",
        "ipv4-ports",
        "ipv4-port-and-none",
        "ipv6-bracketed-port",
        "ipv6-brackets",
        "ipv4-mapped-port",
        "bracketed-ipv4-is-garbage",
        "six-digit-port-is-garbage",
        "empty-port-is-garbage",
    ],
)
async def test_remote_addr(site, addresses, expected, identities):
    guard = site.throttle(RemoteAddr())
    requests = [site.request(address) for address in addresses]
    assert await site.statuses(site.view(guard), requests) == expected
    assert len(site.assert_keys(guard, requests)) == identities


# Identities a custom cache key takes from the client as they are.


class Echo(BaseThrottleCacheKey):
    """Counts by whatever the client put in ``request.identity``."""

    def __init__(self) -> None:
        super().__init__(runs_before_auth=True, name="Echo")

    def __call__(self, request: Any) -> str | None:
        return request.identity


HOSTILE_IDENTITIES = [
    "a" * 10_000,
    "a" * 9_999 + "b",
    "b" + "a" * 9_999,
    "",
    "a",
    "a\x00",
    "a\x00b",
    "a\x00c",
    "{a}",
    "{b}",
    "}{",
    "{",
    "{" * 10_000,
    "\udcff",
    "\udcfe",
    "ünïcödé 🦀",
    "e\u0301",
    "\u00e9",
    "\r\nSet-Cookie: x",
    "lt:fw3:{a}:b:1/60",
]


async def test_hostile_identities_keep_separate_counters(site):
    guard = site.throttle(Echo())
    view = site.view(guard)
    requests = [site.request(identity=value) for value in HOSTILE_IDENTITIES]
    assert set(await site.statuses(view, requests)) == {200}
    assert set(await site.statuses(view, requests)) == {429}
    assert len(site.assert_keys(guard, requests)) == len(HOSTILE_IDENTITIES)


# JWT claims, as JwtToken reads them.


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        (MISSING, SKIPPED),
        (None, SKIPPED),
        ("header.payload.signature", SKIPPED),
        (["jti", "sub"], SKIPPED),
        ({}, SKIPPED),
        ({"aud": "api", "iss": "me"}, SKIPPED),
        ({"jti": None, "sub": None}, SKIPPED),
        ({"jti": "", "sub": ""}, SKIPPED),
        ({"jti": True, "sub": False}, SKIPPED),
        ({"jti": 1.5, "sub": {"id": 1}}, SKIPPED),
        ({"jti": 10**5000}, SKIPPED),
        ({"jti": 2**64}, SKIPPED),
        ({"jti": 2**64 - 1}, COUNTED),
        ({"sub": -5}, COUNTED),
        ({"jti": ["x"], "sub": "alice"}, COUNTED),
        ({"jti": "x" * 10_000}, COUNTED),
        ({"jti": "a\x00{b}\udcff"}, COUNTED),
    ],
    ids=[
        "no-attribute",
        "none",
        "raw-token",
        "list",
        "empty",
        "neither-claim",
        "null-claims",
        "empty-claims",
        "bool-claims",
        "float-and-object",
        "int-of-5000-digits",
        "int-of-65-bits",
        "int-of-64-bits",
        "negative-int",
        "bad-jti-good-sub",
        "jti-of-10000-chars",
        "nul-braces-surrogate",
    ],
)
async def test_jwt_claims(site, claims, expected):
    guard = site.throttle(JwtToken())
    attributes = {} if claims is MISSING else {"jwt_claims": claims}
    requests = [site.request(PROXY, **attributes) for _ in range(2)]
    assert await site.statuses(site.view(guard), requests) == expected
    assert len(site.assert_keys(guard, requests)) == (1 if expected == COUNTED else 0)


HOSTILE_CLAIMS = [
    {"jti": "x" * 10_000},
    {"jti": "x" * 9_999 + "y"},
    {"jti": "a\x00b"},
    {"jti": "a\x00c"},
    {"sub": "a\x00b"},
    {"jti": "{t}"},
    {"sub": "{t}"},
    {"jti": 7},
    {"sub": 7},
    {"jti": "\udcff"},
]


async def test_hostile_claims_keep_separate_counters(site):
    guard = site.throttle(JwtToken())
    view = site.view(guard)
    requests = [site.request(PROXY, jwt_claims=claims) for claims in HOSTILE_CLAIMS]
    assert set(await site.statuses(view, requests)) == {200}
    assert set(await site.statuses(view, requests)) == {429}
    assert len(site.assert_keys(guard, requests)) == len(HOSTILE_CLAIMS)


# X-Forwarded-For, as ProxiedRemoteAddr reads it.

BEHIND_TWO = ProxiedRemoteAddr(["10.0.0.0/8", "2001:db8:ffff::/48"], num_proxies=2)


@pytest.mark.parametrize(
    ("remote_addr", "forwarded_for", "expected"),
    [
        # The nearest peer is no proxy: X-Forwarded-For is never read.
        (ATTACKER, VICTIM, ATTACKER),
        ("garbage", VICTIM, "garbage"),
        (MISSING, VICTIM, None),
        ("", VICTIM, None),
        # Behind trusted proxies.
        ("10.0.0.1", MISSING, "10.0.0.1"),
        ("10.0.0.1", ATTACKER, ATTACKER),
        ("10.0.0.1", f"{VICTIM}, {ATTACKER}", ATTACKER),
        ("10.0.0.1", f"{VICTIM}, {ATTACKER}, 10.0.0.2", ATTACKER),
        ("10.200.3.4", f" {ATTACKER} ,\t10.99.0.1 ", ATTACKER),
        # More hops than num_proxies: the entry at the limit, trusted or not.
        ("10.0.0.1", f"{VICTIM}, 10.0.0.3, 10.0.0.2", "10.0.0.3"),
        ("10.0.0.1", f"{VICTIM}, 10.0.0.3, {ATTACKER}", ATTACKER),
        # Entries run out, or are no address: the last address read.
        ("10.0.0.1", "", "10.0.0.1"),
        ("10.0.0.1", "10.0.0.2", "10.0.0.2"),
        ("10.0.0.1", f"{VICTIM}, unknown", "10.0.0.1"),
        ("10.0.0.1", f"{VICTIM}, garbage, 10.0.0.2", "10.0.0.2"),
        ("10.0.0.1", f"{VICTIM},, 10.0.0.2", "10.0.0.2"),
        ("10.0.0.1", f"{VICTIM}, ", "10.0.0.1"),
        ("10.0.0.1", f"{VICTIM} {ATTACKER}", "10.0.0.1"),
        (
            "10.0.0.1",
            "\u0661\u0669\u0668.\u0665\u0661.\u0661\u0660\u0660.\u0667",
            "10.0.0.1",
        ),
        ("10.0.0.1", "x" * 10_000, "10.0.0.1"),
        ("10.0.0.1", f"{VICTIM}, 10.0.0.2/8", "10.0.0.1"),
        # A header of 10,000 commas, alone or before the real entries.
        ("10.0.0.1", "," * 10_000, "10.0.0.1"),
        ("10.0.0.1", "," * 10_000 + ATTACKER, ATTACKER),
        ("10.0.0.1", f"{VICTIM}," * 10_000 + ATTACKER, ATTACKER),
        # IPv6 proxies and clients, IPv4-mapped addresses.
        # IPv6 clients count as their /64.
        ("2001:db8:ffff::1", "2001:DB8:1::5", "2001:db8:1::/64"),
        ("2001:db8:ffff::1", "2001:db8:1::5, 2001:db8:ffff:9::1", "2001:db8:1::/64"),
        ("2001:db8:fffe::1", VICTIM, "2001:db8:fffe::/64"),
        ("::ffff:10.0.0.1", f"::ffff:{ATTACKER}", ATTACKER),
        ("10.0.0.1", f"{ATTACKER}, ::ffff:10.0.0.2", ATTACKER),
        # Ports are dropped; other forms are no address.
        ("10.0.0.1", f"{ATTACKER}:5678", ATTACKER),
        ("10.0.0.1", "[2001:db8:1::5]:443", "2001:db8:1::/64"),
        ("10.0.0.1", "[2001:db8:1::5]", "2001:db8:1::/64"),
        ("10.0.0.1", f"[{ATTACKER}]:80", "10.0.0.1"),
        ("10.0.0.1", f"{ATTACKER}:123456", "10.0.0.1"),
        ("10.0.0.1", f"{ATTACKER}:", "10.0.0.1"),
    ],
)
def test_proxied_remote_addr_finds_the_client(remote_addr, forwarded_for, expected):
    meta = {}
    if remote_addr is not MISSING:
        meta["REMOTE_ADDR"] = remote_addr
    if forwarded_for is not MISSING:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded_for
    assert BEHIND_TWO(SimpleNamespace(META=meta)) == expected


def test_trusted_proxies_take_addresses_and_networks():
    key = ProxiedRemoteAddr(
        [ipaddress.ip_address("10.0.0.1"), ipaddress.ip_network("fd00::/8"), "::1"],
        num_proxies=1,
    )
    assert [str(network) for network in key.trusted_proxies] == [
        "10.0.0.1/32",
        "fd00::/8",
        "::1/128",
    ]
    behind = SimpleNamespace(
        META={"REMOTE_ADDR": "::1", "HTTP_X_FORWARDED_FOR": VICTIM}
    )
    assert key(behind) == VICTIM
    assert key == ProxiedRemoteAddr(["10.0.0.1/32", "fd00::/8", "::1"], 1)
    assert key != ProxiedRemoteAddr(["10.0.0.1/32", "fd00::/8", "::1"], 2)


def behind_proxy(site: Site, client: str, sent: str | None = None) -> Any:
    """A request that ``client`` sent, with its own X-Forwarded-For ``sent``,
    through the one proxy, which appended ``client``."""
    forwarded = client if sent is None else f"{sent}, {client}"
    return site.request(PROXY, HTTP_X_FORWARDED_FOR=forwarded)


async def test_spoofed_forwarded_for_counts_the_spoofer(site):
    guard = site.throttle(ProxiedRemoteAddr([PROXY], num_proxies=1))
    view = site.view(guard)
    spoofed = behind_proxy(site, ATTACKER, sent=VICTIM)
    requests = [
        spoofed,
        behind_proxy(site, VICTIM),
        spoofed,
        behind_proxy(site, VICTIM),
    ]
    assert await site.statuses(view, requests) == [200, 200, 429, 429]
    assert len(site.assert_keys(guard, requests)) == 2


async def test_untrusted_peer_is_counted_by_remote_addr(site):
    guard = site.throttle(ProxiedRemoteAddr([PROXY], num_proxies=1))
    view = site.view(guard)
    requests = [
        site.request(ATTACKER, HTTP_X_FORWARDED_FOR=VICTIM),
        behind_proxy(site, VICTIM),
        site.request(ATTACKER, HTTP_X_FORWARDED_FOR="192.0.2.44"),
    ]
    assert await site.statuses(view, requests) == [200, 200, 429]
    assert len(site.assert_keys(guard, requests)) == 2


async def test_ipv6_proxies_and_more_hops_than_num_proxies(site):
    guard = site.throttle(ProxiedRemoteAddr(["2001:db8:ffff::/48"], num_proxies=2))
    view = site.view(guard)
    nearest, outer = "2001:db8:ffff::1", "2001:db8:ffff:2::7"
    # A host inside the trusted range, but beyond the hop limit, is the client.
    inside = "2001:db8:ffff:5::9"

    def chain(*hops: str) -> Any:
        return site.request(nearest, HTTP_X_FORWARDED_FOR=", ".join((*hops, outer)))

    requests = [
        chain(VICTIM),
        chain(VICTIM, inside),
        chain(VICTIM, ATTACKER),
        chain("192.0.2.1", ATTACKER),
        chain(VICTIM, inside),
    ]
    assert await site.statuses(view, requests) == [200, 200, 200, 429, 429]
    assert len(site.assert_keys(guard, requests)) == 3


@pytest.mark.parametrize(
    ("forwarded_for", "expected", "identities"),
    [
        ("," * 10_000, [200, 429, 429], 1),
        ("," * 10_000 + ATTACKER, [200, 200, 429], 2),
        (f"{VICTIM}," * 100_000 + ATTACKER, [200, 200, 429], 2),
        ("x" * 1_000_000, [200, 429, 429], 1),
    ],
    ids=["commas", "commas-then-client", "long-chain", "megabyte"],
)
async def test_huge_forwarded_for_keeps_keys_bounded(
    site, forwarded_for, expected, identities
):
    guard = site.throttle(ProxiedRemoteAddr([PROXY], num_proxies=1))
    hostile = site.request(PROXY, HTTP_X_FORWARDED_FOR=forwarded_for)
    requests = [hostile, site.request(PROXY), hostile]
    assert await site.statuses(site.view(guard), requests) == expected
    assert len(site.assert_keys(guard, requests)) == identities
