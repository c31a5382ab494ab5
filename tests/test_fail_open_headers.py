"""A decision the store did not make carries no quota: ``remaining`` and
``reset_after`` are None, and no quota header speaks for it, so a fail-open
response does not tell clients to back off when nothing was counted."""

import pytest
from django.http import HttpResponse

from luathrottle import Limiter
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from luathrottle.django import SyncThrottle, throttle
from luathrottle.headers import RateLimitIETFDraft, RetryAfter, XRateLimit
from servers import free_port

QUOTA_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
IETF_HEADERS = ("RateLimit", "RateLimit-Policy")
ALL_PROVIDERS = [XRateLimit(), RetryAfter(), RateLimitIETFDraft()]


def dead_backend():
    url = f"redis://127.0.0.1:{free_port()}/0"
    return SyncRedis.from_url(url, timeout=0.5, breaker=False)


def test_a_fail_open_decision_has_no_quota():
    decision = Limiter(5, 60, backend=dead_backend(), on_failure="allow").hit("k")
    assert (decision.allowed, decision.reason) == (True, "store_unavailable")
    assert (decision.remaining, decision.reset_after, decision.retry_after) == (
        None,
        None,
        None,
    )
    assert all(item.remaining is None for item in decision.limits)


def test_a_fail_closed_decision_has_a_wait_but_no_quota():
    decision = Limiter(5, 60, backend=dead_backend(), on_failure="deny").hit("k")
    assert (decision.allowed, decision.reason) == (False, "store_unavailable")
    assert (decision.remaining, decision.reset_after) == (None, None)
    assert decision.retry_after >= 1


def view_with(*throttles):
    @throttle(*throttles, headers_on_every_response=True, allow_unsafe_cache=None)
    def view(request):
        return HttpResponse("inside")

    return view


def test_fail_open_response_carries_no_rate_limit_headers(rf):
    view = view_with(
        SyncThrottle(5, 60, backend=dead_backend(), response_headers=ALL_PROVIDERS)
    )
    response = view(rf.get("/", REMOTE_ADDR="198.51.100.7"))
    assert response.status_code == 200
    for name in (*QUOTA_HEADERS, *IETF_HEADERS, "Retry-After"):
        assert name not in response, name


def test_fail_closed_response_says_when_to_retry_and_nothing_more(rf):
    throttle_ = SyncThrottle(
        5,
        60,
        backend=dead_backend(),
        response_headers=ALL_PROVIDERS,
        on_failure="deny",
    )
    response = view_with(throttle_)(rf.get("/", REMOTE_ADDR="198.51.100.7"))
    assert response.status_code == 503
    assert int(response["Retry-After"]) >= 1
    for name in (*QUOTA_HEADERS, *IETF_HEADERS):
        assert name not in response, name


@pytest.mark.parametrize("order", ["working first", "dead first"])
def test_headers_speak_only_for_the_throttle_the_store_decided(rf, order):
    working = SyncThrottle(
        5, 60, backend=MemoryBackend(), response_headers=ALL_PROVIDERS
    )
    dead = SyncThrottle(
        2,
        3600,
        backend=dead_backend(),
        response_headers=ALL_PROVIDERS,
        scope="dead",
    )
    throttles = (working, dead) if order == "working first" else (dead, working)
    response = view_with(*throttles)(rf.get("/", REMOTE_ADDR="198.51.100.7"))
    assert response.status_code == 200
    assert (response["X-RateLimit-Limit"], response["X-RateLimit-Remaining"]) == (
        "5",
        "4",
    )
    assert response["X-RateLimit-Reset"] == "60"
    assert response["RateLimit-Policy"] == '5;w=60;name="RemoteAddr"'
    assert response["RateLimit"] == '"RemoteAddr";r=4;t=60'
