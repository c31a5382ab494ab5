"""The peers, on the bench's own Redis server: the ``limits`` package,
django-modern-rest's throttles, django-ratelimit and Django REST framework.

Each peer is optional: when its package is missing its cases are skipped,
with a note in the report. Peers are imported by name and handled as
``Any``, so that type checking never depends on which of them are installed.
"""

import importlib
import importlib.util
import types
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import redis
from django.http import HttpRequest, HttpResponse

from _bench_django import LOCMEM, addresses, django_case
from _bench_measure import Case

__all__ = ["PEERS", "peer_cases"]

#: Peer name: (the modules it needs, what to install).
PEERS = {
    "limits": (("limits",), "limits[redis]"),
    "dmr": (("dmr", "msgspec"), "django-modern-rest[msgspec]"),
    "django-ratelimit": (("django_ratelimit",), "django-ratelimit"),
    "drf": (("rest_framework",), "djangorestframework"),
}
#: Counters are never denied within a run; logs keep one entry per hit.
HUGE = 1_000_000_000
LOG_NOTE = (
    "a sliding log: one entry per hit, so cost and memory grow with the hits "
    "in its window"
)


def _module(name: str) -> Any:
    return importlib.import_module(name)


def _limits_cases(url: str) -> list[Case]:
    limits = _module("limits")
    storage = _module("limits.storage")
    strategies = _module("limits.strategies")
    item = limits.RateLimitItemPerHour(HUGE)
    cases = []
    for where, store, on_redis in (
        ("memory", storage.storage_from_string("memory://"), False),
        ("redis", storage.storage_from_string(url), True),
    ):
        for name, strategy in (
            ("fixed", "FixedWindowRateLimiter"),
            ("moving", "MovingWindowRateLimiter"),
            ("sliding", "SlidingWindowCounterRateLimiter"),
        ):
            limiter = getattr(strategies, strategy)(store)
            fresh = addresses()
            key = f"limits.{where}.{name}"

            def op(limiter: Any = limiter, key: str = key) -> object:
                return limiter.hit(item, "bench", key)

            def probe(limiter: Any = limiter, fresh: Any = fresh) -> object:
                return limiter.hit(item, "probe", next(fresh))

            cases.append(
                Case(
                    key,
                    f"limits {strategy} ({where} storage)",
                    "limits",
                    op=op,
                    probe=probe,
                    uses_redis=on_redis,
                    note=LOG_NOTE if name == "moving" else "",
                )
            )
    return cases


def _dmr_controller(name: str, throttles: list[Any], headers: bool) -> Any:
    dmr = _module("dmr")
    serializer = _module("dmr.plugins.msgspec").MsgspecSerializer
    report = _module("dmr.throttling").ThrottlingReport
    body: dict[str, Any] = {"throttling": throttles} if throttles else {}
    if headers:
        spec = {
            header: dmr.HeaderSpec()
            for header in (
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
            )
        }
        spec["Retry-After"] = dmr.HeaderSpec(required=False)

        def get(self: Any) -> HttpResponse:
            result: HttpResponse = self.to_response(
                "inside", headers=report(self).report()
            )
            return result

        body["get"] = dmr.validate(
            dmr.ResponseSpec(str, status_code=HTTPStatus.OK, headers=spec)
        )(get)
    else:

        def get(self: Any) -> str:  # type: ignore[misc]
            return "inside"

        body["get"] = get
    base = dmr.Controller[serializer]
    return types.new_class(
        name, (base,), exec_body=lambda namespace: namespace.update(body)
    )


def _dmr_cases(client: redis.Redis) -> list[Case]:
    throttling = _module("dmr.throttling")
    backends = _module("dmr.throttling.backends")
    dmr_redis = _module("dmr.throttling.backends.redis").SyncRedis(client)
    # Its LocMemCache is unsafe across processes, as the bench knows.
    dmr_locmem = backends.SyncDjangoCache(LOCMEM, allow_unsafe_cache=True)
    dmr_cache = backends.SyncDjangoCache()
    rate = throttling.Rate
    rates = (rate.second, rate.minute, rate.hour)
    plain = _dmr_controller("DmrPlain", [], headers=False).as_view()
    cases = [django_case("dmr.plain", "dmr Controller, no throttle", "dmr", plain, 0)]
    stores = (
        ("redis", dmr_redis, (1, 3), "dmr SyncRedis"),
        ("cache", dmr_cache, (1, 3), "dmr SyncDjangoCache(RedisCache)"),
        ("locmem", dmr_locmem, (3,), "dmr SyncDjangoCache(LocMemCache)"),
    )
    for where, backend, sizes, label in stores:
        for size in sizes:
            throttles = [
                throttling.SyncThrottle(HUGE, duration, backend=backend)
                for duration in rates[-size:]
            ]
            headers = size == 3
            name = f"Dmr{where.title()}{size}"
            view = _dmr_controller(name, throttles, headers).as_view()
            title = (
                "3 throttles + ThrottlingReport headers" if headers else "1 throttle"
            )
            cases.append(
                django_case(
                    f"dmr.{where}.{size}",
                    f"dmr Controller, {title}, {label}",
                    "dmr",
                    view,
                    size,
                    on_redis=where != "locmem",
                )
            )
    return cases


def _ratelimit_cases() -> list[Case]:
    ratelimit = _module("django_ratelimit.decorators").ratelimit

    def ratelimited(request: HttpRequest) -> HttpResponse:
        return HttpResponse(b'"inside"', content_type="application/json")

    view = ratelimit(key="ip", rate=f"{HUGE}/h", block=True)(ratelimited)
    return [
        django_case(
            "ratelimit.cache.1",
            "django-ratelimit @ratelimit, RedisCache",
            "django-ratelimit",
            view,
            1,
        )
    ]


def _drf_view(name: str, throttle_classes: list[Any]) -> Callable[..., Any]:
    api_view = _module("rest_framework.views").APIView
    response = _module("rest_framework.response").Response

    def get(self: Any, request: Any) -> Any:
        return response("inside")

    body = {"throttle_classes": throttle_classes, "get": get}
    cls: Any = types.new_class(
        name, (api_view,), exec_body=lambda namespace: namespace.update(body)
    )
    view: Callable[..., Any] = cls.as_view()

    def rendered(request: HttpRequest) -> Any:
        return view(request).render()

    return rendered


def _drf_cases() -> list[Case]:
    anon = _module("rest_framework.throttling").AnonRateThrottle
    return [
        django_case(
            "drf.plain", "DRF APIView, no throttle", "drf", _drf_view("DrfPlain", []), 0
        ),
        django_case(
            "drf.cache.1",
            "DRF AnonRateThrottle, RedisCache",
            "drf",
            _drf_view("DrfAnon", [anon]),
            1,
            note=f"{LOG_NOTE}; rate {HUGE}/second keeps one second of hits",
        ),
    ]


def peer_cases(url: str, client: redis.Redis) -> tuple[list[Case], list[str]]:
    """The cases of every installed peer, and a note for each missing one."""
    builders: dict[str, Callable[[], list[Case]]] = {
        "limits": lambda: _limits_cases(url),
        "dmr": lambda: _dmr_cases(client),
        "django-ratelimit": _ratelimit_cases,
        "drf": _drf_cases,
    }
    cases: list[Case] = []
    skipped: list[str] = []
    for peer, (modules, distribution) in PEERS.items():
        if any(importlib.util.find_spec(module) is None for module in modules):
            skipped.append(f"{peer}: skipped, {distribution} is not installed")
            continue
        cases.extend(builders[peer]())
    return cases, skipped
