"""Django views when the store fails: allow, deny (503) or raise, signals,
and a real redis-server stopped under traffic."""

import shutil

import pytest
from django.http import HttpResponse
from django.test import override_settings

from luathrottle import BackendError, CircuitBreaker, Reason
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import AsyncThrottle, SyncThrottle, throttle
from luathrottle.django.signals import request_throttled, store_failed
from servers import RedisServer, Traffic, free_port, wait_until
from states import locate

UNAVAILABLE = b'{"detail":[{"msg":"Rate limiting is unavailable","type":"ratelimit"}]}'


def dead_backend(kind=SyncRedis, **kwargs):
    return kind.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5, **kwargs)


def view_with(*throttles):
    @throttle(*throttles)
    def view(request):
        return HttpResponse("inside")

    return view


@pytest.fixture
def received():
    """Every signal sent during the test, as (signal name, kwargs)."""
    seen = []

    def on_throttled(sender, **kwargs):
        seen.append(("request_throttled", kwargs))

    def on_failed(sender, **kwargs):
        seen.append(("store_failed", kwargs))

    request_throttled.connect(on_throttled)
    store_failed.connect(on_failed)
    yield seen
    request_throttled.disconnect(on_throttled)
    store_failed.disconnect(on_failed)


def test_default_policy_lets_requests_through_and_signals(rf, received):
    view = view_with(SyncThrottle(1, 60, backend=dead_backend()))
    assert view(rf.get("/", REMOTE_ADDR="198.51.100.7")).status_code == 200
    [(name, kwargs)] = received
    assert name == "store_failed"
    assert kwargs["on_failure"] == "allow"
    assert kwargs["key_name"] == "RemoteAddr"
    assert "198.51.100.7" not in kwargs["state_key"]
    assert kwargs["decision"].reason == Reason.STORE_UNAVAILABLE
    assert isinstance(kwargs["error"], BackendError)


def test_deny_policy_answers_503_with_retry_after(rf):
    view = view_with(SyncThrottle(1, 60, backend=dead_backend(), on_failure="deny"))
    response = view(rf.get("/", REMOTE_ADDR="198.51.100.7"))
    assert (response.status_code, response.content) == (503, UNAVAILABLE)
    assert response["Content-Type"] == "application/json"
    assert int(response["Retry-After"]) >= 1


def test_settings_choose_the_policy(rf):
    view = view_with(SyncThrottle(1, 60, backend=dead_backend()))
    with override_settings(LUATHROTTLE={"on_failure": "deny"}):
        assert view(rf.get("/", REMOTE_ADDR="198.51.100.7")).status_code == 503
    with (
        override_settings(LUATHROTTLE={"on_failure": "raise"}),
        pytest.raises(BackendError),
    ):
        view(rf.get("/", REMOTE_ADDR="198.51.100.7"))


def test_throttles_on_one_failed_store_take_the_strictest_policy(rf):
    backend = dead_backend()
    view = view_with(
        SyncThrottle(1, 60, backend=backend, on_failure="allow"),
        SyncThrottle(5, 3600, backend=backend, on_failure="deny"),
    )
    assert view(rf.get("/", REMOTE_ADDR="198.51.100.7")).status_code == 503


def test_bad_policy_is_rejected_when_built():
    with pytest.raises(ValueError, match="on_failure"):
        SyncThrottle(1, 60, on_failure="maybe")


async def test_async_view_denies_with_503(async_rf):
    @throttle(AsyncThrottle(1, 60, backend=dead_backend(AsyncRedis), on_failure="deny"))
    async def view(request):
        return HttpResponse("inside")

    response = await view(async_rf.get("/", REMOTE_ADDR="198.51.100.7"))
    assert response.status_code == 503


def test_denials_are_signalled_with_hashed_keys(rf, received, redis_client):
    view = view_with(SyncThrottle(1, 60, backend=SyncRedis(redis_client)))
    view(rf.get("/", REMOTE_ADDR="198.51.100.7"))
    assert received == []
    assert view(rf.get("/", REMOTE_ADDR="198.51.100.7")).status_code == 429
    [(name, kwargs)] = received
    assert name == "request_throttled"
    assert kwargs["throttle"].limit.max_requests == 1
    assert kwargs["decision"].allowed is False
    assert "198.51.100.7" not in kwargs["state_key"]
    # SimpleRate's state is a field of the identity's hash.
    assert redis_client.hexists(*locate(kwargs["state_key"])) == 1


@pytest.mark.parametrize(("on_failure", "while_down"), [("allow", 200), ("deny", 503)])
def test_redis_stopped_under_traffic_answers_no_500(
    rf, tmp_path, on_failure, while_down
):
    server = RedisServer(shutil.which("redis-server"), str(tmp_path))
    server.start()
    breaker = CircuitBreaker(failures=2, cool_off=3600)
    backend = SyncRedis.from_url(server.url, timeout=0.5, breaker=breaker)
    view = view_with(SyncThrottle(10_000, 3600, backend=backend, on_failure=on_failure))

    def request(index):
        return view(rf.get("/", REMOTE_ADDR=f"192.0.2.{index}")).status_code

    try:
        with Traffic(request) as traffic:
            statuses = traffic.results
            wait_until(lambda: len(statuses) > 30)
            server.stop()
            wait_until(lambda: breaker.state == "open")
            down = len(statuses)
            wait_until(lambda: len(statuses) > down + 30)
    finally:
        server.stop()
    assert traffic.errors == []
    assert set(statuses[:down]) <= {200, while_down}
    assert statuses[0] == 200
    assert set(statuses[down:]) == {while_down}
