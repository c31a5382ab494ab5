"""``Limiter.limit`` and ``AsyncLimiter.limit``: any function, or a block,
limited; a refused call raises ``RateLimited`` before it runs and spends
nothing. On Redis and the embedded store."""

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from luathrottle import AsyncLimiter, Limiter, RateLimited, Reason
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from test_prometheus import dead_store


@pytest.fixture(params=["memory", "redis"])
def limiter(request, redis_url):
    if request.param == "memory":
        backend = MemoryBackend()
    else:
        backend = SyncRedis(request.getfixturevalue("redis_client"))
    return Limiter(2, 60, backend=backend, scope=f"functions-{uuid.uuid4().hex}")


@pytest.fixture(params=["memory", "redis"])
def async_limiter(request):
    if request.param == "memory":
        backend = MemoryBackend()
    else:
        backend = AsyncRedis(request.getfixturevalue("async_redis_client"))
    return AsyncLimiter(2, 60, backend=backend, scope=f"functions-{uuid.uuid4().hex}")


def test_a_refused_call_raises_before_the_function_runs(limiter):
    ran = []

    @limiter.limit(key="geocoder")
    def geocode(city):
        ran.append(city)
        return city.upper()

    assert geocode("oslo") == "OSLO"
    assert geocode("rome") == "ROME"
    with pytest.raises(RateLimited) as refused:
        geocode("lima")
    assert ran == ["oslo", "rome"]
    assert refused.value.decision.allowed is False
    assert 0 < refused.value.retry_after <= 60
    assert refused.value.retry_after == refused.value.decision.retry_after
    # The refusal spent nothing.
    assert limiter.peek("geocoder").remaining == 0
    assert geocode.__name__ == "geocode"


def test_a_callable_key_is_given_the_arguments(limiter):
    @limiter.limit(key=lambda user, **_: None if user == "admin" else user)
    def upload(user, size=1):
        return size

    assert [upload("ann", size=3) for _ in range(2)] == [3, 3]
    with pytest.raises(RateLimited):
        upload("ann")
    assert upload("bob") == 1
    # A key of None is not counted.
    assert [upload("admin") for _ in range(5)] == [1] * 5
    assert limiter.peek("admin").remaining == 2


def test_cost_spends_several_units(limiter):
    @limiter.limit(key="bulk", cost=2)
    def bulk():
        return "sent"

    @limiter.limit(key="huge", cost=3)
    def huge():
        return "sent"

    assert bulk() == "sent"
    with pytest.raises(RateLimited):
        bulk()
    # More than the limit holds can never fit.
    with pytest.raises(RateLimited) as never:
        huge()
    assert never.value.retry_after is None
    assert "cost_exceeds_limit" in str(never.value)


def test_a_block_is_limited_as_a_context_manager(limiter):
    entered = 0
    for _ in range(2):
        with limiter.limit(key="block") as decision:
            entered += 1
            assert decision.allowed
    with pytest.raises(RateLimited), limiter.limit(key="block"):
        entered += 1
    assert entered == 2


def test_an_async_def_is_limited_by_a_limiter_too(limiter):
    @limiter.limit(key="async")
    async def fetch():
        return "fetched"

    async def main():
        return [await fetch(), await fetch()]

    assert asyncio.run(main()) == ["fetched", "fetched"]
    with pytest.raises(RateLimited):
        asyncio.run(fetch())


async def test_the_async_limiter_limits_coroutines_and_blocks(async_limiter):
    ran = []

    @async_limiter.limit(key=lambda city: f"city:{city}")
    async def weather(city):
        ran.append(city)
        return city

    assert [await weather("oslo"), await weather("oslo")] == ["oslo", "oslo"]
    with pytest.raises(RateLimited):
        await weather("oslo")
    async with async_limiter.limit(key="block"):
        ran.append("block")
    assert (await async_limiter.peek("city:oslo")).remaining == 0
    assert ran == ["oslo", "oslo", "block"]


def test_the_async_limiter_refuses_a_sync_function():
    limiter = AsyncLimiter(1, 60, backend=MemoryBackend())
    with pytest.raises(TypeError, match="async functions"):
        limiter.limit(key="k")(lambda: None)


def test_the_failure_policy_decides_when_the_store_is_dead():
    denying = Limiter(1, 60, backend=dead_store(), on_failure="deny")
    allowing = Limiter(1, 60, backend=dead_store(), on_failure="allow")

    @denying.limit(key="k")
    def denied():
        return "ran"

    @allowing.limit(key="k")
    def allowed():
        return "ran"

    with pytest.raises(RateLimited) as refused:
        denied()
    assert refused.value.decision.reason == Reason.STORE_UNAVAILABLE
    assert "store_unavailable" in str(refused.value)
    assert allowed() == "ran"


def test_bad_arguments_fail_when_limiting_naming_them():
    limiter = Limiter(1, 60, backend=MemoryBackend())
    with pytest.raises(TypeError, match="key"):
        limiter.limit(key=42)
    with pytest.raises(ValueError, match="cost"):
        limiter.limit(key="k", cost=0)
    with pytest.raises(TypeError, match="cost"):
        limiter.limit(key="k", cost=1.5)
    with pytest.raises(TypeError, match="str key"), limiter.limit(key=str):
        pass

    @limiter.limit(key=lambda: 7)
    def wrong():
        return None

    with pytest.raises(TypeError, match="key returned int"):
        wrong()


def test_wait_true_waits_for_the_hit_instead_of_refusing():
    limiter = Limiter(1, 1, backend=MemoryBackend())
    ran = []

    @limiter.limit(key="slow", wait=True, timeout=30)
    def call(n):
        ran.append(n)
        return n

    # The second call waits out the first's second, and runs.
    assert [call(1), call(2)] == [1, 2]
    assert ran == [1, 2]


def test_a_wait_that_cannot_fit_in_time_raises_at_once():
    limiter = Limiter(1, 86400, backend=MemoryBackend())

    @limiter.limit(key="daily", wait=True, timeout=5)
    def call():
        return "ran"

    assert call() == "ran"
    with pytest.raises(RateLimited) as refused:
        call()
    assert refused.value.retry_after > 5


def test_an_async_limiter_waits_in_async_code():
    limiter = AsyncLimiter(1, 1, backend=MemoryBackend())

    @limiter.limit(key="slow", wait=True, timeout=30)
    async def call(n):
        return n

    async def main():
        return [await call(1), await call(2)]

    assert asyncio.run(main()) == [1, 2]


def test_a_limiter_refuses_to_wait_in_async_code_and_bad_waits():
    limiter = Limiter(1, 60, backend=MemoryBackend())
    with pytest.raises(TypeError, match="block the event loop"):

        @limiter.limit(key="k", wait=True)
        async def call():
            return None

    with pytest.raises(TypeError, match="wait"):
        limiter.limit(key="k", wait="yes")
    with pytest.raises(ValueError, match="timeout"):
        limiter.limit(key="k", wait=True, timeout=-1)


def test_the_outside_api_example_runs_its_workers_under_the_limit():
    example = Path(__file__).resolve().parents[1] / "examples" / "outside_api.py"
    result = subprocess.run(
        [sys.executable, example, "--calls", "8", "--workers", "4"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("8 calls answered in ")
    # 5 a second, spaced a fifth of a second apart by the store; a thread
    # that notes its call late may put one more in some second.
    assert int(lines[1].rsplit(" ", 1)[1]) <= 6
