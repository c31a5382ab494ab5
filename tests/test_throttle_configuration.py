"""Every bad throttle configuration we know of, in one table.

Each one must fail when the throttle, its cache key or its view is built,
never when a request comes in, and the message must name the culprit.
Some also have a test of their own in test_django_config.py; this table is
the one place that lists them all.
"""

import functools
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import override_settings

from luathrottle.algorithms import BaseThrottleAlgorithm, LeakyBucket
from luathrottle.backends.django_cache import SyncDjangoCache
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import AsyncThrottle, SyncThrottle, ThrottledView, throttle
from luathrottle.django.auth import DjangoSessionAsyncAuth
from luathrottle.django.cache_keys import (
    JwtToken,
    ProxiedRemoteAddr,
    RemoteAddr,
    UserPk,
)
from luathrottle.headers import XRateLimit


def sync_store() -> SyncRedis:
    return SyncRedis(fakeredis.FakeRedis())


def async_store() -> AsyncRedis:
    return AsyncRedis(fakeredis.FakeAsyncRedis())


def sync_throttle(*args: Any, **options: Any) -> SyncThrottle:
    """A throttle on a safe store: only the given options can be wrong."""
    return SyncThrottle(*(args or (1, 60)), **{"backend": sync_store(), **options})


def async_throttle(**options: Any) -> AsyncThrottle:
    return AsyncThrottle(1, 60, **{"backend": async_store(), **options})


def sync_view(*throttles: Any, **options: Any) -> None:
    @throttle(*throttles, **options)
    def view(request):
        return HttpResponse()


def async_view(*throttles: Any, **options: Any) -> None:
    @throttle(*throttles, **options)
    async def view(request):
        return HttpResponse()


def class_view(get: Callable[..., Any] | None = None, **attributes: Any) -> None:
    def sync_get(self, request):
        return HttpResponse()

    type(
        "Configured",
        (ThrottledView,),
        {"get": get or sync_get, "__module__": __name__, **attributes},
    )


async def async_get(self, request):
    return HttpResponse()


class NoSuchScript(BaseThrottleAlgorithm):
    script_name = "no_such_script"


def handler_throttle_on_a_sync_handler() -> None:
    class Mixed(ThrottledView):
        @throttle(async_throttle())
        def get(self, request):
            return HttpResponse()


def throttle_on_a_helper_method() -> None:
    class Helper(ThrottledView):
        @throttle(sync_throttle())
        def helper(self, request):
            return HttpResponse()


def settings_throttle_of_the_other_kind() -> None:
    with override_settings(LUATHROTTLE={"throttling": [sync_throttle()]}):
        async_view()


def case(
    case_id: str,
    error: type[Exception],
    match: str,
    build: Callable[..., Any],
    *args: Any,
    **kwargs: Any,
) -> Any:
    """A row: ``build(*args, **kwargs)`` must raise ``error`` matching ``match``."""
    return pytest.param(
        functools.partial(build, *args, **kwargs), error, match, id=case_id
    )


# Short names keep each row on one line.
ST = sync_throttle
PROXY = "10.0.0.1"
LIMIT = "max_requests"
WINDOW = "duration_in_seconds"

LIMITS = [
    case("max-0", ValueError, LIMIT, ST, 0, 60),
    case("max-negative", ValueError, LIMIT, ST, -1, 60),
    case("max-float", TypeError, LIMIT, ST, 1.5, 60),
    case("max-bool", TypeError, LIMIT, ST, True, 60),
    case("max-huge", ValueError, LIMIT, ST, 2**53 + 1, 60),
    case("max-str", TypeError, LIMIT, ST, "5", 60),
    case("max-rate-str", TypeError, LIMIT, ST, "5/minute", 60),
    case("max-none", TypeError, LIMIT, ST, None, 60),
    case("duration-0", ValueError, WINDOW, ST, 1, 0),
    case("duration-negative", ValueError, WINDOW, ST, 1, -60),
    case("duration-float", TypeError, WINDOW, ST, 1, 1.5),
    case("duration-inf", TypeError, WINDOW, ST, 1, float("inf")),
    case("duration-bool", TypeError, WINDOW, ST, 1, False),
    case("duration-huge", ValueError, WINDOW, ST, 1, 10**10),
    case("duration-str", TypeError, WINDOW, ST, 1, "60"),
    case("duration-none", TypeError, WINDOW, ST, 1, None),
]

ALGORITHMS = [
    case("algorithm-str", TypeError, "algorithm must", ST, algorithm="leaky_bucket"),
    case("algorithm-class", TypeError, "algorithm must", ST, algorithm=LeakyBucket),
    case(
        "algorithm-unknown-script",
        ValueError,
        "no Lua script named 'no_such_script'",
        lambda: sync_view(ST(algorithm=NoSuchScript())),
    ),
]

BACKENDS = [
    case(
        "async-backend-for-sync",
        TypeError,
        "backend must be a SyncBackend for SyncThrottle, got "
        "luathrottle.backends.redis.AsyncRedis",
        lambda: SyncThrottle(1, 60, backend=async_store()),
    ),
    case(
        "sync-backend-for-async",
        TypeError,
        "an AsyncBackend for AsyncThrottle, got luathrottle.backends.redis.SyncRedis",
        lambda: AsyncThrottle(1, 60, backend=sync_store()),
    ),
    case(
        "backend-raw-client",
        TypeError,
        "backend must be",
        lambda: SyncThrottle(1, 60, backend=fakeredis.FakeRedis()),
    ),
    case("backend-str", TypeError, "backend must be", ST, backend="default"),
    case("cache-name-int", TypeError, "cache_name must be", SyncDjangoCache, 5),
    case(
        "cache-alias-unknown",
        ImproperlyConfigured,
        r"'nowhere' is not in settings\.CACHES",
        lambda: sync_view(ST(backend=SyncDjangoCache("nowhere"))),
    ),
    case(
        "cache-unsafe-refused",
        ImproperlyConfigured,
        "LocMemCache.*allow_unsafe_cache is False",
        lambda: sync_view(SyncThrottle(1, 60), allow_unsafe_cache=False),
    ),
]

CACHE_KEYS = [
    case("cache-key-str", TypeError, "cache_key must be", ST, cache_key="ip"),
    case("cache-key-class", TypeError, "cache_key must be", ST, cache_key=RemoteAddr),
    case(
        "cache-key-function",
        TypeError,
        "cache_key must be",
        ST,
        cache_key=lambda request: "x",
    ),
    case("key-name-empty", ValueError, "name must be", RemoteAddr, name=""),
    case("key-name-crlf", ValueError, "name must be", RemoteAddr, name="a\r\nb: x"),
    case("key-name-long", ValueError, "name must be", RemoteAddr, name="x" * 101),
    case("key-name-int", TypeError, "name must be", RemoteAddr, name=5),
    case(
        "key-stage-int", TypeError, "runs_before_auth", RemoteAddr, runs_before_auth=1
    ),
    case(
        "user-pk-before-auth",
        ValueError,
        "UserPk .*must run after auth",
        UserPk,
        runs_before_auth=True,
    ),
    case(
        "jwt-before-auth",
        ValueError,
        "JwtToken .*must run after auth",
        JwtToken,
        runs_before_auth=True,
    ),
    case(
        "jwt-attribute",
        ValueError,
        "claims_attribute",
        JwtToken,
        claims_attribute="jwt-claims",
    ),
]

OPTIONS = [
    case("headers-str-item", TypeError, "response_headers", ST, response_headers=["X"]),
    case(
        "headers-class",
        TypeError,
        "response_headers",
        ST,
        response_headers=[XRateLimit],
    ),
    case("headers-str", TypeError, "response_headers", ST, response_headers="X"),
    case(
        "headers-not-a-list",
        TypeError,
        "response_headers must be a list",
        ST,
        response_headers=XRateLimit(),
    ),
    case("scope-empty", ValueError, "scope must be", ST, scope=""),
    case("scope-int", TypeError, "scope must be", ST, scope=5),
    case("scope-long", ValueError, "scope must be", ST, scope="x" * 201),
    case("scope-newline", ValueError, "scope must be", ST, scope="a\nb"),
    case("clock-int", TypeError, "clock must be", ST, clock=5),
    case("clock-str", TypeError, "clock must be", ST, clock="time.time"),
    case("on-failure-unknown", ValueError, "on_failure must be", ST, on_failure="open"),
    case("on-failure-bool", ValueError, "on_failure must be", ST, on_failure=True),
]

VIEWS = [
    case(
        "same-name-on-function-view",
        ImproperlyConfigured,
        "would share one counter",
        lambda: sync_view(ST(), ST()),
    ),
    case(
        "same-name-on-class-view",
        ImproperlyConfigured,
        r"Configured\.get: .*would share one counter",
        lambda: class_view(throttling=(ST(), ST(cache_key=RemoteAddr()))),
    ),
    case(
        "async-throttle-sync-view",
        ImproperlyConfigured,
        "is a sync view.*use SyncThrottle",
        lambda: sync_view(async_throttle()),
    ),
    case(
        "sync-throttle-async-view",
        ImproperlyConfigured,
        "is an async view.*use AsyncThrottle",
        lambda: async_view(ST()),
    ),
    case(
        "sync-throttle-async-handler",
        ImproperlyConfigured,
        r"Configured\.get is an async view",
        lambda: class_view(get=async_get, throttling=(ST(),)),
    ),
    case(
        "async-throttle-sync-handler",
        ImproperlyConfigured,
        r"Mixed\.get is a sync view",
        handler_throttle_on_a_sync_handler,
    ),
    case(
        "settings-throttle-of-other-kind",
        ImproperlyConfigured,
        r"\[0\].*async view",
        settings_throttle_of_the_other_kind,
    ),
    case(
        "async-auth-sync-view",
        ImproperlyConfigured,
        "BaseSyncAuth objects",
        lambda: sync_view(auth=[DjangoSessionAsyncAuth()]),
    ),
    case(
        "not-a-throttle",
        ImproperlyConfigured,
        "'5/minute' is not a SyncThrottle",
        lambda: sync_view("5/minute"),
    ),
    case(
        "class-throttling-not-a-tuple",
        ImproperlyConfigured,
        r"Configured\.throttling must be a tuple",
        lambda: class_view(throttling=ST()),
    ),
    case(
        "throttle-on-helper",
        ImproperlyConfigured,
        "helper, which handles no HTTP method",
        throttle_on_a_helper_method,
    ),
    case(
        "unsafe-policy-int",
        TypeError,
        "allow_unsafe_cache",
        throttle,
        allow_unsafe_cache=1,
    ),
    case(
        "headers-switch-str",
        TypeError,
        "headers_on_every_response",
        throttle,
        headers_on_every_response="yes",
    ),
]

TRUSTED = "trusted_proxies"
HOPS = "num_proxies must be"
PROXIES = [
    case(
        "proxies-str",
        TypeError,
        f"{TRUSTED} must be a list",
        ProxiedRemoteAddr,
        PROXY,
        1,
    ),
    case(
        "proxies-none",
        TypeError,
        f"{TRUSTED} must be a list",
        ProxiedRemoteAddr,
        None,
        1,
    ),
    case("proxies-empty", ValueError, f"{TRUSTED} must name", ProxiedRemoteAddr, [], 1),
    case(
        "proxies-bad-address",
        ValueError,
        f"{TRUSTED} holds '10.0.0.300'",
        ProxiedRemoteAddr,
        ["10.0.0.300"],
        1,
    ),
    case(
        "proxies-host-bits",
        ValueError,
        f"{TRUSTED} holds '10.0.0.1/8'",
        ProxiedRemoteAddr,
        ["10.0.0.1/8"],
        1,
    ),
    case(
        "proxies-bad-prefix",
        ValueError,
        f"{TRUSTED} holds '10.0.0.0/33'",
        ProxiedRemoteAddr,
        ["10.0.0.0/33"],
        1,
    ),
    case(
        "proxies-hostname",
        ValueError,
        f"{TRUSTED} holds 'proxy.internal'",
        ProxiedRemoteAddr,
        ["proxy.internal"],
        1,
    ),
    case(
        "proxies-int",
        TypeError,
        f"{TRUSTED} must hold .*int",
        ProxiedRemoteAddr,
        [1],
        1,
    ),
    case(
        "proxies-bytes",
        TypeError,
        f"{TRUSTED} must hold .*bytes",
        ProxiedRemoteAddr,
        [b"10.0.0.1"],
        1,
    ),
    case(
        "proxies-mapped",
        ValueError,
        f"{TRUSTED} holds .*IPv4-mapped",
        ProxiedRemoteAddr,
        ["::ffff:10.0.0.0/104"],
        1,
    ),
    case("proxies-missing", TypeError, TRUSTED, ProxiedRemoteAddr, num_proxies=1),
    case(
        "hops-0", ValueError, f"{HOPS} between 1 and 32", ProxiedRemoteAddr, [PROXY], 0
    ),
    case(
        "hops-negative", ValueError, f"{HOPS} between", ProxiedRemoteAddr, [PROXY], -1
    ),
    case("hops-huge", ValueError, f"{HOPS} between", ProxiedRemoteAddr, [PROXY], 33),
    case("hops-bool", TypeError, f"{HOPS} an int", ProxiedRemoteAddr, [PROXY], True),
    case("hops-float", TypeError, f"{HOPS} an int", ProxiedRemoteAddr, [PROXY], 1.0),
    case("hops-str", TypeError, f"{HOPS} an int", ProxiedRemoteAddr, [PROXY], "1"),
    case("hops-missing", TypeError, "num_proxies", ProxiedRemoteAddr, [PROXY]),
    case(
        "proxied-name",
        ValueError,
        "name must be",
        ProxiedRemoteAddr,
        [PROXY],
        1,
        name="",
    ),
    case(
        "proxied-stage",
        TypeError,
        "runs_before_auth",
        ProxiedRemoteAddr,
        [PROXY],
        1,
        runs_before_auth="yes",
    ),
]

TABLE = LIMITS + ALGORITHMS + BACKENDS + CACHE_KEYS + OPTIONS + VIEWS + PROXIES


@pytest.mark.parametrize(("build", "error", "match"), TABLE)
def test_bad_configuration_fails_when_built(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_the_table_is_long_and_its_ids_unique():
    ids = [param.id for param in TABLE]
    assert len(ids) >= 20
    assert len(set(ids)) == len(ids)


def test_the_good_twins_of_the_table_build():
    """The table fails for its bad values, not because its helpers do."""
    sync_view(sync_throttle(), sync_throttle(cache_key=RemoteAddr(name="other")))
    async_view(async_throttle())
    class_view(throttling=(sync_throttle(),))
    ProxiedRemoteAddr(["10.0.0.0/8", "::1", "2001:db8::/32"], 32)
    sync_throttle(10**3, 10**6, algorithm=LeakyBucket(), scope="x" * 200)
