"""ConcurrencyThrottle: a slot held for the length of a view, streaming
included, on real concurrent requests."""

import asyncio
import threading
from types import ModuleType

import pytest
import redis.asyncio
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

from luathrottle import BackendError
from luathrottle.backends.django_cache import SyncDjangoCache
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import (
    AsyncConcurrencyThrottle,
    ConcurrencyThrottle,
    Rate,
    SyncThrottle,
    ThrottledView,
    throttle,
)
from luathrottle.django.cache_keys import UserPk
from servers import free_port

# Closing a response sends request_finished, whose handlers touch the
# database connection.
pytestmark = pytest.mark.django_db

TOO_MANY = b'{"detail":[{"msg":"Too many requests","type":"ratelimit"}]}'
WAIT = 10  # seconds any wait below may take at most


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        return MemoryBackend()
    return SyncRedis(request.getfixturevalue("redis_client"))


@pytest.fixture(params=["memory", "redis"])
async def astore(request):
    if request.param == "memory":
        yield MemoryBackend()
        return
    client = redis.asyncio.Redis.from_url(request.getfixturevalue("redis_url"))
    await client.flushdb()
    yield AsyncRedis(client)
    await client.aclose()


def urls(**views):
    urlconf = ModuleType("concurrency_urls")
    urlconf.urlpatterns = [  # type: ignore[attr-defined]
        path(f"{name}/", view) for name, view in views.items()
    ]
    return override_settings(ROOT_URLCONF=urlconf)


def test_threads_never_hold_more_than_max_in_flight(store):
    entered = threading.Semaphore(0)
    gate = threading.Event()

    @throttle(ConcurrencyThrottle(2, lease=60, backend=store), allow_unsafe_cache=None)
    def slow(request):
        entered.release()
        gate.wait(WAIT)
        return HttpResponse("done")

    statuses: list[int] = []
    with urls(slow=slow):

        def request() -> None:
            statuses.append(Client().get("/slow/").status_code)

        holders = [threading.Thread(target=request) for _ in range(2)]
        for thread in holders:
            thread.start()
        assert entered.acquire(timeout=WAIT)
        assert entered.acquire(timeout=WAIT)
        refused = [Client().get("/slow/") for _ in range(3)]
        gate.set()
        for thread in holders:
            thread.join(WAIT)
        after = Client().get("/slow/")
    assert statuses == [200, 200]
    assert [response.status_code for response in refused] == [429, 429, 429]
    assert refused[0].content == TOO_MANY
    assert refused[0]["Retry-After"] == "60"
    assert after.status_code == 200


def test_a_streaming_response_holds_its_slot_until_its_content_ends(store, rf):
    @throttle(ConcurrencyThrottle(1, lease=60, backend=store), allow_unsafe_cache=None)
    def stream(request):
        return StreamingHttpResponse(iter([b"a", b"b", b"c"]))

    first = stream(rf.get("/"))
    assert stream(rf.get("/")).status_code == 429
    assert b"".join(first.streaming_content) == b"abc"
    second = stream(rf.get("/"))
    assert second.status_code == 200
    second.close()  # the client left before reading anything
    third = stream(rf.get("/"))
    assert third.status_code == 200
    assert list(third.streaming_content) == [b"a", b"b", b"c"]


def test_streaming_through_the_test_client_releases(store):
    @throttle(ConcurrencyThrottle(1, lease=60, backend=store), allow_unsafe_cache=None)
    def stream(request):
        return StreamingHttpResponse(iter([b"x"] * 3))

    with urls(stream=stream):
        client = Client()
        for _ in range(3):
            response = client.get("/stream/")
            assert response.status_code == 200
            assert b"".join(response.streaming_content) == b"xxx"
            response.close()


def test_an_error_in_the_view_releases_the_slot(store, rf):
    @throttle(ConcurrencyThrottle(1, lease=60, backend=store), allow_unsafe_cache=None)
    def broken(request):
        raise RuntimeError("view failed")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            broken(rf.get("/"))


def test_a_request_refused_by_a_rate_takes_no_slot(rf):
    backend = MemoryBackend()
    # A scope of its own names the slots' limiter whatever the view's name.
    slots = ConcurrencyThrottle(1, lease=60, backend=backend, scope="slots")

    @throttle(
        SyncThrottle(1, Rate.minute, backend=backend),
        slots,
        allow_unsafe_cache=None,
    )
    def view(request):
        return StreamingHttpResponse(iter([b"held"]))

    held = view(rf.get("/"))
    refused = view(rf.get("/"))
    assert refused.status_code == 429
    assert "X-RateLimit-Limit" in refused  # the rate refused it, not the slots
    key = slots.limiter("").state_key("127.0.0.1")
    assert backend.command("ZCARD", key) == 1
    held.close()
    assert backend.command("ZCARD", key) == 0


def test_a_skipped_cache_key_holds_no_slot(rf):
    @throttle(
        ConcurrencyThrottle(1, lease=60, backend=MemoryBackend(), cache_key=UserPk()),
        allow_unsafe_cache=None,
    )
    def stream(request):
        return StreamingHttpResponse(iter([b"x"]))

    request = rf.get("/")
    first = stream(request)
    assert stream(rf.get("/")).status_code == 200
    first.close()


async def test_async_tasks_never_hold_more_than_max_in_flight(astore):
    entered = asyncio.Semaphore(0)
    gate = asyncio.Event()

    @throttle(
        AsyncConcurrencyThrottle(2, lease=30, backend=astore), allow_unsafe_cache=None
    )
    async def slow(request):
        entered.release()
        await asyncio.wait_for(gate.wait(), WAIT)
        return HttpResponse("done")

    with urls(slow=slow):
        client = AsyncClient()
        holders = [asyncio.ensure_future(client.get("/slow/")) for _ in range(2)]
        await asyncio.wait_for(entered.acquire(), WAIT)
        await asyncio.wait_for(entered.acquire(), WAIT)
        refused = await asyncio.gather(*(client.get("/slow/") for _ in range(3)))
        gate.set()
        done = await asyncio.wait_for(asyncio.gather(*holders), WAIT)
        after = await client.get("/slow/")
    assert [response.status_code for response in done] == [200, 200]
    assert [response.status_code for response in refused] == [429, 429, 429]
    assert refused[0]["Retry-After"] == "30"
    assert after.status_code == 200


async def test_async_streaming_releases_when_exhausted_or_closed(astore, async_rf):
    @throttle(
        AsyncConcurrencyThrottle(1, lease=30, backend=astore), allow_unsafe_cache=None
    )
    async def stream(request):
        async def content():
            for part in (b"a", b"b"):
                yield part

        return StreamingHttpResponse(content())

    first = await stream(async_rf.get("/"))
    assert (await stream(async_rf.get("/"))).status_code == 429
    assert [part async for part in first.streaming_content] == [b"a", b"b"]
    second = await stream(async_rf.get("/"))
    assert second.status_code == 200
    # Django's ASGI handler closes a response from a worker thread.
    await sync_to_async(second.close)()
    third = await stream(async_rf.get("/"))
    assert third.status_code == 200
    await sync_to_async(third.close)()


async def test_async_streaming_through_the_asgi_handler(astore):
    @throttle(
        AsyncConcurrencyThrottle(1, lease=30, backend=astore), allow_unsafe_cache=None
    )
    async def stream(request):
        async def content():
            yield b"x"

        return StreamingHttpResponse(content())

    with urls(stream=stream):
        client = AsyncClient()
        for _ in range(3):
            response = await client.get("/stream/")
            assert response.status_code == 200
            assert [part async for part in response.streaming_content] == [b"x"]


def test_a_cache_that_cannot_hold_leases_is_refused(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }
    with pytest.raises(ValueError, match="backend cannot hold the leases"):
        ConcurrencyThrottle(1, lease=10, backend=SyncDjangoCache())


def test_a_sync_view_refuses_an_async_concurrency_throttle():
    with pytest.raises(ImproperlyConfigured, match="use ConcurrencyThrottle"):
        throttle(AsyncConcurrencyThrottle(1, lease=10, backend=MemoryBackend()))(
            lambda request: HttpResponse()
        )


def test_two_identical_concurrency_throttles_on_one_view_are_refused():
    backend = MemoryBackend()
    with pytest.raises(ImproperlyConfigured, match="share one counter"):
        throttle(
            ConcurrencyThrottle(1, lease=10, backend=backend),
            ConcurrencyThrottle(1, lease=10, backend=backend),
        )(lambda request: HttpResponse())


@pytest.mark.parametrize(("on_failure", "status"), [("allow", 200), ("deny", 503)])
def test_failure_policy_when_the_store_is_down(on_failure, status, rf):
    backend = SyncRedis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    view = throttle(
        ConcurrencyThrottle(1, lease=10, backend=backend, on_failure=on_failure),
        allow_unsafe_cache=None,
    )(lambda request: HttpResponse("inside"))
    response = view(rf.get("/"))
    assert response.status_code == status
    if status == 503:
        assert "Retry-After" in response


def test_a_view_class_holds_slots_for_its_handlers(rf):
    class Export(ThrottledView):
        throttling = (ConcurrencyThrottle(1, lease=60, backend=MemoryBackend()),)
        throttling_allow_unsafe_cache = None

        def get(self, request):
            return StreamingHttpResponse(iter([b"rows"]))

    view = Export.as_view()
    held = view(rf.get("/"))
    assert view(rf.get("/")).status_code == 429
    assert list(held.streaming_content) == [b"rows"]
    assert view(rf.get("/")).status_code == 200


def test_async_content_from_a_sync_view_releases_when_closed(rf):
    @throttle(
        ConcurrencyThrottle(1, lease=60, backend=MemoryBackend()),
        allow_unsafe_cache=None,
    )
    def stream(request):
        async def content():
            yield b"x"

        return StreamingHttpResponse(content())

    held = stream(rf.get("/"))
    assert stream(rf.get("/")).status_code == 429
    held.close()
    assert stream(rf.get("/")).status_code == 200


def test_concurrency_throttles_do_not_go_in_settings(settings):
    settings.LUATHROTTLE = {
        "throttling": [ConcurrencyThrottle(1, lease=60, backend=MemoryBackend())]
    }
    with pytest.raises(ImproperlyConfigured, match="must be throttles or"):
        throttle()(lambda request: HttpResponse())


@pytest.mark.parametrize(
    "throttle_type", [ConcurrencyThrottle, AsyncConcurrencyThrottle]
)
def test_a_client_clock_is_refused_naming_the_fix(throttle_type, clock):
    with pytest.raises(TypeError, match=r"clock is not taken.*MemoryBackend\(clock="):
        throttle_type(1, lease=60, backend=MemoryBackend(), clock=clock)


def test_leases_expire_on_the_clock_of_the_throttles_store(clock, rf):
    slots = ConcurrencyThrottle(1, lease=60, backend=MemoryBackend(clock=clock))

    @throttle(slots, allow_unsafe_cache=None)
    def stream(request):
        return StreamingHttpResponse(iter([b"x"]))

    stream(rf.get("/"))  # never read nor closed: a worker that died
    refused = stream(rf.get("/"))
    assert (refused.status_code, refused["Retry-After"]) == (429, "60")
    clock.advance(60)
    assert stream(rf.get("/")).status_code == 200


def test_a_later_throttle_that_raises_gives_back_the_slots_taken(rf):
    near = MemoryBackend()
    dead = SyncRedis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    first = ConcurrencyThrottle(1, lease=60, backend=near, scope="near")
    second = ConcurrencyThrottle(
        1, lease=60, backend=dead, scope="far", on_failure="raise"
    )

    @throttle(first, second, allow_unsafe_cache=None)
    def view(request):
        return HttpResponse("inside")

    key = first.limiter("").state_key("127.0.0.1")
    for _ in range(2):
        with pytest.raises(BackendError):
            view(rf.get("/"))
        assert near.command("ZCARD", key) == 0


async def test_a_later_async_throttle_that_raises_gives_back_the_slots_taken(
    async_rf,
):
    near = MemoryBackend()
    dead = AsyncRedis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    first = AsyncConcurrencyThrottle(1, lease=60, backend=near, scope="near")
    second = AsyncConcurrencyThrottle(
        1, lease=60, backend=dead, scope="far", on_failure="raise"
    )

    @throttle(first, second, allow_unsafe_cache=None)
    async def view(request):
        return HttpResponse("inside")

    key = first.limiter("").state_key("127.0.0.1")
    for _ in range(2):
        with pytest.raises(BackendError):
            await view(async_rf.get("/"))
        assert near.command("ZCARD", key) == 0
    await dead.client.aclose()
