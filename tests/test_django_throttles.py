"""Throttles and cache keys without views: API, keys, headers, specs."""

import hashlib
import inspect
from types import SimpleNamespace

import pytest

import luathrottle.django
from luathrottle.backends.memory import MemoryBackend
from luathrottle.django import AsyncThrottle, Rate, SyncThrottle, ThrottlingReport
from luathrottle.django.auth import DjangoSessionAsyncAuth, DjangoSessionSyncAuth
from luathrottle.django.cache_keys import JwtToken, RemoteAddr, UserPk


def public(cls) -> dict[str, bool]:
    """Public attribute names, each with whether it is a coroutine function."""
    return {
        name: inspect.iscoroutinefunction(getattr(cls, name))
        for name in dir(cls)
        if not name.startswith("_") or name == "__call__"
    }


def test_public_api_is_pinned():
    assert luathrottle.django.__all__ == [
        "AsyncConcurrencyThrottle",
        "AsyncThrottle",
        "ConcurrencyThrottle",
        "Rate",
        "SyncThrottle",
        "ThrottledView",
        "ThrottlingReport",
        "UnsafeCacheBackendWarning",
        "throttle",
    ]
    assert luathrottle.django.Rate is luathrottle.Rate


@pytest.mark.parametrize(
    ("sync", "async_"),
    [(SyncThrottle, AsyncThrottle), (DjangoSessionSyncAuth, DjangoSessionAsyncAuth)],
)
def test_twins_expose_the_same_names(sync, async_):
    sync_api, async_api = public(sync), public(async_)
    assert sync_api.keys() == async_api.keys()
    differing = {name for name in sync_api if sync_api[name] != async_api[name]}
    assert all(async_api[name] for name in differing)
    # A throttle is configuration: the twins differ in nothing but dmr's
    # call into them, which its own base classes define.
    assert differing == (set() if sync is SyncThrottle else {"__call__"})


def test_report_answers_the_seed_methods():
    assert set(public(ThrottlingReport)) == {"report", "areport"}


def test_the_seed_defaults():
    throttle = SyncThrottle(5, Rate.minute)
    assert isinstance(throttle.cache_key, RemoteAddr)
    assert repr(throttle.backend) == "SyncDjangoCache('default')"
    assert repr(AsyncThrottle(5, 60).backend) == "AsyncDjangoCache('default')"
    assert [type(item).__name__ for item in throttle.response_headers] == [
        "XRateLimit",
        "RetryAfter",
    ]
    assert repr(throttle.algorithm) == "SimpleRate()"
    assert (throttle.limit.max_requests, throttle.limit.duration) == (5, 60)
    assert throttle.limit.name == "RemoteAddr"


def test_throttles_run_memory_backend_sync_and_async():
    memory = MemoryBackend()
    assert SyncThrottle(1, 60, backend=memory).backend is memory
    assert AsyncThrottle(1, 60, backend=memory).backend is memory


@pytest.mark.parametrize("scope", ["", "x" * 201, "a\nb", 5])
def test_bad_scopes_are_refused(scope):
    with pytest.raises((TypeError, ValueError), match="scope"):
        SyncThrottle(1, 60, scope=scope)


def test_response_specs_as_the_seed_shapes_them():
    error_model = {"schema": {"$ref": "#/components/schemas/ErrorModel"}}
    specs = SyncThrottle(1, 60).provide_response_specs()
    assert list(specs) == ["429"]
    assert specs["429"]["description"] == "Raised when throttling rate was hit"
    assert specs["429"]["content"] == {"application/json": error_model}
    assert list(specs["429"]["headers"]) == [
        "Retry-After",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    ]
    assert specs["429"]["headers"]["Retry-After"] == {
        "description": (
            "Indicates how long the user agent should wait before making a "
            "follow-up request"
        ),
        "required": True,
        "schema": {"type": "string"},
    }
    assert (
        "headers"
        not in SyncThrottle(1, 60, response_headers=[]).provide_response_specs()["429"]
    )


def test_report_of_a_request_no_throttle_saw_is_empty():
    assert ThrottlingReport(SimpleNamespace()).report() == {}


def request_with(**meta):
    return SimpleNamespace(META=meta)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.1", "10.0.0.1"),
        (" 10.0.0.1 ", "10.0.0.1"),
        ("2001:DB8:0:0::1", "2001:db8::/64"),
        ("2001:DB8:0:7:8::1", "2001:db8:0:7::/64"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("not an address", "not an address"),
        ("", None),
        (None, None),
    ],
)
def test_remote_addr(value, expected):
    meta = {} if value is None else {"REMOTE_ADDR": value}
    assert RemoteAddr()(request_with(**meta)) == expected


def test_cache_key_arguments_are_checked():
    with pytest.raises(ValueError, match="must run after auth"):
        UserPk(runs_before_auth=True)
    with pytest.raises(ValueError, match="must run after auth"):
        JwtToken(runs_before_auth=True)
    with pytest.raises(ValueError, match="name must be"):
        RemoteAddr(name="")
    with pytest.raises(ValueError, match="name must be"):
        RemoteAddr(name="a\r\nSet-Cookie: x")
    with pytest.raises(TypeError, match="runs_before_auth"):
        RemoteAddr(runs_before_auth=1)
    with pytest.raises(ValueError, match="same option"):
        UserPk(exclude_staff=True, exclude_stuff=False)


def user_request(**fields):
    user = {"is_authenticated": True, "is_superuser": False, "is_staff": False, "pk": 4}
    return SimpleNamespace(user=SimpleNamespace(**{**user, **fields}))


def test_user_pk_exclusions():
    assert UserPk()(user_request()) == "4"
    assert UserPk()(user_request(is_superuser=True)) is None
    assert UserPk()(user_request(is_staff=True)) is None
    assert UserPk(exclude_superuser=False)(user_request(is_superuser=True)) == "4"
    assert UserPk(exclude_stuff=False)(user_request(is_staff=True)) == "4"
    assert UserPk(exclude_staff=False)(user_request(is_staff=True)) == "4"
    assert UserPk()(user_request(is_authenticated=False)) is None
    assert UserPk()(user_request(pk=None)) is None
    assert UserPk()(SimpleNamespace()) is None


def test_jwt_token_hashes_jti_else_sub():
    def key(claims, **options):
        return JwtToken(**options)(SimpleNamespace(jwt_claims=claims, other=claims))

    jti = hashlib.sha256(b"jti:abc").hexdigest()
    assert key({"jti": "abc", "sub": "u1"}) == jti
    assert key({"sub": 42}) == hashlib.sha256(b"sub:42").hexdigest()
    assert key({"jti": "", "sub": "u1"}) == hashlib.sha256(b"sub:u1").hexdigest()
    assert key({"jti": True}) is None
    assert key({}) is None
    assert key("a.b.c") is None
    assert key({"jti": "abc"}, claims_attribute="other") == jti
    assert JwtToken()(SimpleNamespace()) is None
