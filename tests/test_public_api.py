"""The public surface is pinned, and the sync and async twins match."""

import inspect

import luathrottle
from luathrottle import AsyncLimiter, Limiter
from luathrottle.backends.redis import AsyncRedis, SyncRedis


def test_top_level_exports_are_pinned():
    assert luathrottle.__all__ == [
        "AsyncLimiter",
        "BackendError",
        "BaseThrottleAlgorithm",
        "Decision",
        "LeakyBucket",
        "Limit",
        "LimitDecision",
        "Limiter",
        "LuathrottleError",
        "Rate",
        "SimpleRate",
        "SlidingWindow",
        "TokenBucket",
    ]
    assert all(getattr(luathrottle, name).__doc__ for name in luathrottle.__all__)


def public_methods(cls):
    return {
        name
        for name, _ in inspect.getmembers(cls, callable)
        if not name.startswith("_")
    }


def test_limiter_twins_expose_the_same_methods():
    assert (
        public_methods(Limiter)
        == public_methods(AsyncLimiter)
        == {"hit", "peek", "reset"}
    )
    for name in ("hit", "peek", "reset"):
        assert inspect.iscoroutinefunction(getattr(AsyncLimiter, name))
        assert inspect.signature(getattr(Limiter, name)) == inspect.signature(
            getattr(AsyncLimiter, name)
        )


def test_redis_twins_expose_the_same_methods():
    sync_names = public_methods(SyncRedis)
    async_names = {
        name if name == "from_url" else name.removeprefix("a")
        for name in public_methods(AsyncRedis)
    }
    assert sync_names == async_names
    assert sync_names == {
        "delete_keys",
        "from_url",
        "initialize_algorithm",
        "run_script",
        "run_scripts",
    }
