"""luathrottle.drf: DRF's throttling contract, decided by luathrottle."""

import gc
import multiprocessing

import pytest
import redis
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.utils.module_loading import import_string
from rest_framework import throttling as drf_throttling
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate
from rest_framework.views import APIView

import drf_urls
from ietf_fields import policies, states
from luathrottle import LeakyBucket
from luathrottle.backends.django_cache import SyncDjangoCache
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from luathrottle.django import SyncThrottle
from luathrottle.drf import (
    AnonRateThrottle,
    RateLimitHeadersMixin,
    ScopedRateThrottle,
    SimpleRateThrottle,
    UserRateThrottle,
    exception_handler,
)
from luathrottle.headers import RateLimitIETFDraft

factory = APIRequestFactory()


def make_view(*throttles, base=APIView, **attributes):
    def get(self, request):
        return Response({"ok": True})

    namespace = {"throttle_classes": list(throttles), "get": get, **attributes}
    return type("View", (base,), namespace).as_view()


def request(view, addr="192.0.2.1", user=None):
    incoming = factory.get("/", REMOTE_ADDR=addr)
    if user is not None:
        force_authenticate(incoming, user=user)
    return view(incoming)


def throttle_class(base, clock, backend=None, **attributes):
    namespace = {
        "backend": backend or MemoryBackend(),
        "clock": staticmethod(clock),
        **attributes,
    }
    return type(f"Lua{base.__name__}", (base,), namespace)


def test_apiview_admits_the_rate_then_denies_with_the_exact_retry_after(clock):
    anon = throttle_class(AnonRateThrottle, clock, rate="3/minute")
    view = make_view(anon)
    assert [request(view).status_code for _ in range(3)] == [200, 200, 200]
    clock.advance(20.5)
    denied = request(view)
    assert denied.status_code == 429
    assert denied["Retry-After"] == "40"  # 39.5 s left of the window
    assert "Expected available in 40 seconds" in str(denied.data["detail"])
    assert request(view, addr="192.0.2.2").status_code == 200
    clock.advance(39.5)
    assert request(view).status_code == 200


def test_wait_is_the_exact_time_until_the_next_request_fits(clock):
    bucket = throttle_class(
        SimpleRateThrottle, clock, rate="2/minute", algorithm=LeakyBucket()
    )
    bucket.get_cache_key = lambda self, request, view: "everyone"
    throttle = bucket()
    incoming = factory.get("/")
    assert throttle.allow_request(incoming, None)
    assert throttle.allow_request(factory.get("/"), None)
    assert not throttle.allow_request(factory.get("/"), None)
    assert throttle.wait() == pytest.approx(30.0)


def test_a_denied_request_consumes_nothing(clock):
    backend = MemoryBackend()
    anon = throttle_class(AnonRateThrottle, clock, backend, rate="2/minute")
    view = make_view(anon)
    assert [request(view).status_code for _ in range(12)] == [200, 200] + [429] * 10
    clock.advance(60)
    # DRF's history would still hold the ten denials; nothing was counted.
    assert [request(view).status_code for _ in range(3)] == [200, 200, 429]


def test_viewset_through_the_router_with_api_client(monkeypatch):
    monkeypatch.setattr(drf_urls.ThreePerMinute, "backend", MemoryBackend())
    client = APIClient()
    with override_settings(ROOT_URLCONF="drf_urls"):
        first = client.get("/orders/")
        assert first.status_code == 200
        assert first.json() == [{"id": 1}]
        (policy,) = policies(first["RateLimit-Policy"]).values()
        assert policy == {"q": 3, "w": 60}
        assert [state["r"] for state in states(first["RateLimit"]).values()] == [2]
        assert client.get("/orders/7/").json() == {"id": 7}
        assert client.get("/orders/").status_code == 200
        denied = client.get("/orders/8/")
    assert denied.status_code == 429
    (state,) = states(denied["RateLimit"]).values()
    assert state["r"] == 0
    assert 0 < int(denied["Retry-After"]) <= 60
    assert int(denied["Retry-After"]) == state["t"]


RATES = {"anon": None, "user": None, "burst": "2/minute", "sustained": "3/minute"}


def test_scoped_rate_throttle_with_two_scopes(clock):
    scoped = throttle_class(ScopedRateThrottle, clock)
    with override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": RATES}):
        burst = make_view(scoped, throttle_scope="burst")
        sustained = make_view(scoped, throttle_scope="sustained")
        unscoped = make_view(scoped)
        assert [request(burst).status_code for _ in range(3)] == [200, 200, 429]
        assert [request(sustained).status_code for _ in range(4)] == [
            *[200] * 3,
            429,
        ]
        assert all(request(unscoped).status_code == 200 for _ in range(5))
        missing = make_view(scoped, throttle_scope="nowhere")
        with pytest.raises(ImproperlyConfigured, match="nowhere"):
            request(missing)


def test_user_rate_throttle_counts_each_authenticated_user(clock):
    user_throttle = throttle_class(UserRateThrottle, clock, rate="2/minute")
    view = make_view(user_throttle)
    alice, bob = User(pk=1, username="alice"), User(pk=2, username="bob")
    assert [request(view, user=alice).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    # Another user on the same address has a quota of their own, and so
    # has the anonymous client there.
    assert request(view, user=bob).status_code == 200
    assert request(view).status_code == 200
    assert request(view, addr="198.51.100.9", user=alice).status_code == 429


def test_anon_rate_throttle_skips_authenticated_users(clock):
    anon = throttle_class(AnonRateThrottle, clock, rate="1/minute")
    view = make_view(anon)
    alice = User(pk=1, username="alice")
    assert all(request(view, user=alice).status_code == 200 for _ in range(3))


def test_rates_come_from_rest_framework_settings(clock):
    anon = throttle_class(AnonRateThrottle, clock)
    with override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": {"anon": "1/s"}}):
        assert anon().rate == "1/s"
        view = make_view(anon)
        assert [request(view).status_code for _ in range(2)] == [200, 429]
    no_rates = override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": {}})
    with no_rates, pytest.raises(ImproperlyConfigured, match="anon"):
        anon()


class SettingsThrottle(AnonRateThrottle):
    rate = "1/minute"
    backend = MemoryBackend()


def test_default_throttle_classes_setting():
    drf = {"DEFAULT_THROTTLE_CLASSES": [f"{__name__}.SettingsThrottle"]}
    with override_settings(REST_FRAMEWORK=drf):
        # APIView reads the setting when its module is imported; a view
        # class defined now reads it as DRF documents.
        view = make_view(*api_settings.DEFAULT_THROTTLE_CLASSES)
        assert [request(view).status_code for _ in range(2)] == [200, 429]


def test_get_cache_key_is_the_override_point():
    class PerHeader(SimpleRateThrottle):
        rate = "1/minute"
        backend = MemoryBackend()

        def get_cache_key(self, request, view):
            return request.headers.get("X-Tenant")

    view = make_view(PerHeader)
    hit = lambda tenant: view(  # noqa: E731
        factory.get("/", headers={"X-Tenant": tenant} if tenant else {})
    )
    assert [hit("a").status_code, hit("a").status_code] == [200, 429]
    assert hit("b").status_code == 200
    assert all(hit(None).status_code == 200 for _ in range(3))


def test_rates_from_request_data_keep_a_bounded_number_of_throttles():
    # One rate per request, as an overridden get_rate() can make them: the
    # luathrottle throttles behind them are not kept without end.
    class PerRequestRate(SimpleRateThrottle):
        scope = "per-request"
        backend = MemoryBackend()

        def get_rate(self):
            self.__class__.served = getattr(self.__class__, "served", 0) + 1
            return f"{self.served}/hour"

        def get_cache_key(self, request, view):
            return "everyone"

    view = make_view(PerRequestRate)
    statuses = {request(view).status_code for _ in range(1000)}
    assert statuses == {200}
    gc.collect()
    alive = sum(type(item) is SyncThrottle for item in gc.get_objects())
    assert alive <= 300


def test_a_cache_key_that_is_no_str_is_named():
    class Numbered(SimpleRateThrottle):
        rate = "1/minute"
        backend = MemoryBackend()

        def get_cache_key(self, request, view):
            return 7

    with pytest.raises(TypeError, match=r"Numbered.get_cache_key\(\) must return"):
        Numbered().allow_request(factory.get("/"), None)


def test_a_bad_rate_is_improperly_configured():
    class Zero(AnonRateThrottle):
        rate = "0/minute"
        backend = MemoryBackend()

    with pytest.raises(
        ImproperlyConfigured, match=r"Zero \(scope 'anon'\) rate '0/minute'"
    ):
        request(make_view(Zero))


def evalsha_calls(client):
    stats = client.info("commandstats")
    return sum(
        stats.get(f"cmdstat_{name}", {}).get("calls", 0)
        for name in ("evalsha", "eval", "fcall")
    )


@pytest.mark.redis
def test_several_throttles_are_one_round_trip_and_all_or_nothing(redis_client):
    backend = SyncRedis(redis_client)

    # DRF's own semantics count a request in every throttle that admits it
    # (test_counting.py); these two count it only when both admit it.
    class Burst(AnonRateThrottle):
        scope = "burst"
        rate = "2/minute"
        counting = "all_or_nothing"

    class Sustained(AnonRateThrottle):
        scope = "sustained"
        rate = "3/hour"
        counting = "all_or_nothing"

    Burst.backend = Sustained.backend = backend
    view = make_view(Burst, Sustained)
    request(view, addr="198.51.100.1")  # loads the script
    redis_client.config_resetstat()
    statuses = [request(view).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert evalsha_calls(redis_client) == 3  # one per request, not per throttle
    # The burst denial consumed nothing of the hourly quota: one is left,
    # on any view that counts the same throttle.
    hourly_only = make_view(Sustained)
    assert [request(hourly_only).status_code for _ in range(2)] == [200, 429]


def test_a_denial_by_one_throttle_costs_the_others_nothing(clock):
    backend = MemoryBackend()
    together = {"counting": "all_or_nothing"}
    burst = throttle_class(
        AnonRateThrottle, clock, backend, scope="b", rate="1/s", **together
    )
    hourly = throttle_class(
        AnonRateThrottle, clock, backend, scope="h", rate="3/h", **together
    )
    view = make_view(burst, hourly)
    assert [request(view).status_code for _ in range(5)] == [200, *[429] * 4]
    clock.advance(1)
    assert request(view).status_code == 200
    clock.advance(1)
    assert request(view).status_code == 200
    clock.advance(1)
    denied = request(view)
    assert denied.status_code == 429
    assert int(denied["Retry-After"]) == 3600 - 3  # the hour's, the longest wait


def test_the_exception_handler_adds_headers_to_throttled_responses(clock):
    anon = throttle_class(
        AnonRateThrottle,
        clock,
        rate="1/minute",
        response_headers=[RateLimitIETFDraft()],
    )
    view = make_view(anon)
    drf = {"EXCEPTION_HANDLER": "luathrottle.drf.exception_handler"}
    with override_settings(REST_FRAMEWORK=drf):
        assert import_string(drf["EXCEPTION_HANDLER"]) is exception_handler
        assert "RateLimit" not in request(view)
        denied = request(view)
    assert denied.status_code == 429
    assert denied["RateLimit-Policy"] == '1;w=60;name="anon"'
    assert denied["RateLimit"] == '"anon";r=0;t=60'


def test_the_mixin_adds_headers_to_every_response(clock):
    anon = throttle_class(AnonRateThrottle, clock, rate="2/minute")
    view = make_view(anon, base=type("Base", (RateLimitHeadersMixin, APIView), {}))
    first = request(view)
    assert policies(first["RateLimit-Policy"]) == {"anon": {"q": 2, "w": 60}}
    assert states(first["RateLimit"]) == {"anon": {"r": 1, "t": 60}}
    request(view)
    denied = request(view)
    assert states(denied["RateLimit"]) == {"anon": {"r": 0, "t": 60}}
    assert denied["Retry-After"] == "60"


def test_the_backend_setting_picks_the_store(redis_url, clock):
    base = redis_url.rsplit("/", 1)[0]
    with redis.Redis.from_url(f"{base}/1") as client:
        client.flushdb()
        anon = throttle_class(AnonRateThrottle, clock, rate="1/minute")
        anon.backend = None
        with override_settings(LUATHROTTLE_DRF_BACKEND="redis"):
            view = make_view(anon)
            assert [request(view).status_code for _ in range(2)] == [200, 429]
        assert client.dbsize() >= 1
    bad = override_settings(LUATHROTTLE_DRF_BACKEND=3)
    with bad, pytest.raises(ImproperlyConfigured, match="LUATHROTTLE_DRF_BACKEND"):
        request(make_view(anon))


def test_the_default_store_is_the_default_cache():
    rates = {"DEFAULT_THROTTLE_RATES": {"anon": "5/minute"}}
    with override_settings(REST_FRAMEWORK=rates):
        inner = AnonRateThrottle().luathrottle_throttle()
    assert isinstance(inner.backend, SyncDjangoCache)
    assert inner.backend.cache_name == "default"
    assert AnonRateThrottle.backend is None


def test_the_classes_are_drfs():
    assert issubclass(AnonRateThrottle, drf_throttling.AnonRateThrottle)
    assert issubclass(UserRateThrottle, drf_throttling.UserRateThrottle)
    assert issubclass(ScopedRateThrottle, drf_throttling.ScopedRateThrottle)
    assert ScopedRateThrottle.scope_attr == "throttle_scope"


PROCESSES = 16
REQUESTS = 10


def run_race(redis_url, which):
    from drf_worker import race

    base = redis_url.rsplit("/", 1)[0]
    with redis.Redis.from_url(f"{base}/1") as client:
        client.flushdb()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    args = (redis_url, which, REQUESTS, barrier, results)
    children = [context.Process(target=race, args=args) for _ in range(PROCESSES)]
    for child in children:
        child.start()
    counts = [results.get(timeout=240) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    return sum(counts)


@pytest.mark.redis
def test_sixteen_processes_admit_exactly_the_limit(redis_url, record_property):
    ours = run_race(redis_url, "luathrottle")
    theirs = run_race(redis_url, "drf")
    record_property("drf_admitted_of_5", f"luathrottle {ours}, DRF {theirs}")
    print(f"16 processes x {REQUESTS}, limit 5: luathrottle {ours}, DRF {theirs}")
    assert ours == 5
    assert isinstance(theirs, int)
