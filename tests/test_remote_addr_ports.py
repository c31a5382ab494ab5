"""REMOTE_ADDR with a port, through Django's test client.

Some servers put ``ip:port`` or ``[v6]:port`` into REMOTE_ADDR. A client
picks a new port per connection, so ``RemoteAddr`` drops it, as
``ProxiedRemoteAddr`` does for X-Forwarded-For: six connections from one
address share one quota. Values that are no address with a port stay what
they are (counted as they are), as before.
"""

from types import ModuleType

import pytest
from django.http import HttpResponse
from django.test import override_settings
from django.urls import path

from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import AsyncThrottle, Rate, SyncThrottle, ThrottledView


@pytest.fixture(params=["memory", "redis"])
def urls(request):
    """A sync and an async view, each allowing 3 requests a minute per
    address, on a store of their own."""
    if request.param == "memory":
        sync_backend = async_backend = MemoryBackend()
    else:
        sync_backend = SyncRedis(request.getfixturevalue("redis_client"))
        async_backend = AsyncRedis(request.getfixturevalue("async_redis_client"))

    class SyncView(ThrottledView):
        throttling = (SyncThrottle(3, Rate.minute, backend=sync_backend),)
        throttling_allow_unsafe_cache = None

        def get(self, request):
            return HttpResponse("inside")

    class AsyncView(ThrottledView):
        throttling = (AsyncThrottle(3, Rate.minute, backend=async_backend),)
        throttling_allow_unsafe_cache = None

        async def get(self, request):
            return HttpResponse("inside")

    # A URLconf of this test's own: its views' counters start empty.
    urlconf = ModuleType("remote_addr_urls")
    urlconf.urlpatterns = [  # type: ignore[attr-defined]
        path("sync/", SyncView.as_view()),
        path("async/", AsyncView.as_view()),
    ]
    with override_settings(ROOT_URLCONF=urlconf):
        yield


@pytest.fixture(params=["sync", "async"])
def get(request, urls, client, async_client):
    """GET the view of one mode with a REMOTE_ADDR, through WSGI for the
    sync view and ASGI for the async one; returns the status."""
    if request.param == "sync":

        async def fetch(remote_addr):
            return client.get("/sync/", REMOTE_ADDR=remote_addr).status_code

    else:

        async def fetch(remote_addr):
            # An ASGI server gives the address as the scope's client, which
            # becomes REMOTE_ADDR; the port there is REMOTE_PORT.
            response = await async_client.request(
                method="GET", path="/async/", client=[remote_addr, 0]
            )
            return response.status_code

    return fetch


async def statuses(get, addresses):
    return [await get(address) for address in addresses]


async def test_six_ports_of_one_ipv4_address_share_one_quota(get):
    ports = [f"192.0.2.1:{port}" for port in range(50001, 50007)]
    assert await statuses(get, ports) == [200] * 3 + [429] * 3
    assert await get("192.0.2.1") == 429  # the same address, without a port
    assert await get("192.0.2.2:50001") == 200  # another address


async def test_bracketed_ipv6_with_a_port_is_its_address(get):
    ports = [f"[2001:DB8::1]:{port}" for port in range(443, 446)]
    assert await statuses(get, ports) == [200] * 3
    assert await statuses(get, ["2001:db8::1", "[2001:db8:0::1]:8443"]) == [429] * 2
    assert await get("[2001:db8:0:1::1]:443") == 200  # another /64


async def test_ipv4_mapped_with_a_port_is_its_ipv4_address(get):
    addresses = ["[::ffff:192.0.2.9]:1", "192.0.2.9:2", "::ffff:192.0.2.9"]
    assert await statuses(get, addresses) == [200] * 3
    assert await get("192.0.2.9") == 429


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("[192.0.2.1]:80", "[192.0.2.1]:81"),  # brackets are for IPv6 only
        ("192.0.2.1:123456", "192.0.2.1:123457"),  # no port has six digits
        ("garbage:80", "garbage:81"),
        ("192.0.2.1:", "192.0.2.1::"),
    ],
)
async def test_garbage_with_a_port_still_counts_as_it_is(get, first, second):
    """Each value is its own identity, as any value that is no address."""
    assert await statuses(get, [first] * 4) == [200] * 3 + [429]
    assert await get(second) == 200
