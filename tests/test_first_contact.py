"""What a newcomer trips on first: throttles take the limit forms Limiter
takes, and each mistake gets one message that names the culprit."""

import pytest
import redis
import redis.asyncio
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse

from luathrottle import Limit, Limiter
from luathrottle.backends.django_cache import SyncDjangoCache
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import AsyncThrottle, Rate, SyncThrottle, throttle


@pytest.mark.parametrize("kind", [SyncThrottle, AsyncThrottle])
@pytest.mark.parametrize(
    "args",
    [
        pytest.param((5, Rate.minute), id="int-and-rate"),
        pytest.param(("5/minute",), id="text"),
        pytest.param(("5/60s",), id="text-seconds"),
        pytest.param(((5, Rate.minute),), id="pair"),
        pytest.param((Limit(5, 60),), id="Limit"),
        pytest.param((Limit(5, 60, name="burst"),), id="named-Limit"),
        pytest.param((["5/minute"],), id="list-of-one"),
    ],
)
def test_throttles_take_every_form_of_one_limit(kind, args):
    item = kind(*args)
    assert (item.limit.max_requests, item.limit.duration) == (5, 60)
    # Headers name a throttle's limit after its cache key, as the chapter does.
    assert item.limit.name == "RemoteAddr"


def test_the_limit_forms_decide_alike(rf):
    throttles = [
        SyncThrottle("2/minute", scope="text"),
        SyncThrottle((2, 60), scope="pair"),
        SyncThrottle(Limit(2, 60), scope="limit"),
        SyncThrottle(2, Rate.minute, scope="ints"),
    ]
    for item in throttles:

        @throttle(item, allow_unsafe_cache=None)
        def view(request):
            return HttpResponse("inside")

        codes = [view(rf.get("/", REMOTE_ADDR="192.0.2.9")).status_code for _ in "123"]
        assert codes == [200, 200, 429], item


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        pytest.param(
            lambda: SyncThrottle(["1/second", "5/minute"]),
            ValueError,
            "max_requests must be one limit, got 2",
            id="two-limits",
        ),
        pytest.param(
            lambda: SyncThrottle("5/minute", 60),
            TypeError,
            "duration_in_seconds goes only with an int max_requests",
            id="text-and-duration",
        ),
        pytest.param(
            lambda: SyncThrottle(5),
            TypeError,
            "duration_in_seconds is required with an int max_requests",
            id="no-duration",
        ),
        pytest.param(
            lambda: Limiter(5.0, 60),
            TypeError,
            "max_requests must be an int, got float 5.0",
            id="float-count",
        ),
        pytest.param(
            lambda: SyncThrottle(True, 60),
            TypeError,
            "max_requests must be an int, got bool True",
            id="bool-count",
        ),
        pytest.param(
            lambda: SyncRedis(redis.asyncio.Redis()),
            TypeError,
            "client must be a redis.Redis, redis.cluster.RedisCluster, "
            "valkey.Valkey or valkey.cluster.ValkeyCluster, got redis.asyncio.Redis",
            id="async-client-for-sync",
        ),
        pytest.param(
            lambda: AsyncRedis(redis.Redis()),
            TypeError,
            "client must be a redis.asyncio.Redis, "
            "redis.asyncio.cluster.RedisCluster, valkey.asyncio.Valkey or "
            "valkey.asyncio.cluster.ValkeyCluster, got redis.Redis",
            id="sync-client-for-async",
        ),
    ],
)
def test_mistakes_name_the_culprit(build, error, message):
    with pytest.raises(error) as caught:
        build()
    assert str(caught.value).startswith(message)


def test_a_sync_view_given_an_async_throttle_says_an():
    with pytest.raises(ImproperlyConfigured, match=r"is an AsyncThrottle; use Sync"):

        @throttle(AsyncThrottle(1, 60))
        def view(request):
            return HttpResponse("inside")


def test_an_unknown_cache_on_a_class_level_throttle_names_the_class():
    from luathrottle.django import ThrottledView

    with pytest.raises(ImproperlyConfigured) as caught:

        class Orders(ThrottledView):
            throttling = (SyncThrottle(1, 60, backend=SyncDjangoCache("nope")),)

            def get(self, request):
                return HttpResponse("inside")

    message = str(caught.value)
    assert message.startswith("test_first_contact.test_an_unknown_cache")
    assert "<locals>.Orders: SyncThrottle(" in message
    assert "Orders.get" not in message
    assert "cache_name 'nope' is not in settings.CACHES" in message
