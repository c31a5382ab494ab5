"""Bad configuration fails when the limiter is built, naming the culprit."""

import pytest

from luathrottle import AsyncLimiter, LeakyBucket, Limit, Limiter, Rate
from luathrottle.backends.memory import MemoryBackend
from luathrottle.rates import parse_limits

CASES = [
    ((0, 60), {}, ValueError, "max_requests"),
    ((-1, 60), {}, ValueError, "max_requests"),
    ((1.5, 60), {}, TypeError, "max_requests"),
    ((True, 60), {}, TypeError, "max_requests"),
    ((2**60, 60), {}, ValueError, "max_requests"),
    ((5, 0), {}, ValueError, "duration_in_seconds"),
    ((5, -60), {}, ValueError, "duration_in_seconds"),
    ((5, 0.5), {}, TypeError, "duration_in_seconds"),
    ((5, "60"), {}, TypeError, "duration_in_seconds"),
    ((5, 10**12), {}, ValueError, "duration_in_seconds"),
    ((5,), {}, TypeError, "duration_in_seconds"),
    (("5/fortnight",), {}, ValueError, "5/fortnight"),
    (("five/minute",), {}, ValueError, "five/minute"),
    (([],), {}, ValueError, "at least one"),
    ((["5/minute", "5/60s"],), {}, ValueError, "same limit twice"),
    (("5/minute", 60), {}, TypeError, "duration_in_seconds"),
    (([5],), {}, TypeError, "max_requests holds 5"),
    ((5, 60), {"algorithm": "leaky"}, TypeError, "algorithm"),
    ((5, 60), {"algorithm": LeakyBucket}, TypeError, "algorithm"),
    ((5, 60), {"backend": object()}, TypeError, "backend"),
    ((5, 60), {"prefix": ""}, ValueError, "prefix"),
    ((5, 60), {"prefix": "a{b}"}, ValueError, "prefix"),
    ((5, 60), {"prefix": 7}, TypeError, "prefix"),
    ((5, 60), {"clock": 1.0}, TypeError, "clock"),
]


@pytest.mark.parametrize(("args", "kwargs", "error", "culprit"), CASES)
def test_bad_configuration_is_rejected_at_construction(args, kwargs, error, culprit):
    with pytest.raises(error, match=culprit):
        Limiter(*args, **kwargs)


def test_an_async_backend_is_rejected_by_the_sync_limiter():
    import redis.asyncio

    from luathrottle.backends.redis import AsyncRedis

    with pytest.raises(TypeError, match="backend must be a SyncBackend"):
        Limiter(5, 60, backend=AsyncRedis(redis.asyncio.Redis()))


def test_a_sync_backend_is_rejected_by_the_async_limiter():
    import redis

    from luathrottle.backends.redis import SyncRedis

    expected = "backend must be an AsyncBackend for AsyncLimiter, got "
    with pytest.raises(TypeError, match=rf"^{expected}luathrottle\.backends\.redis"):
        AsyncLimiter(5, 60, backend=SyncRedis(redis.Redis()))


@pytest.mark.parametrize(
    ("key", "cost", "error", "culprit"),
    [
        (None, 1, TypeError, "key"),
        (b"bytes", 1, TypeError, "key"),
        ("k", 0, ValueError, "cost"),
        ("k", 1.0, TypeError, "cost"),
        ("k", True, TypeError, "cost"),
    ],
)
def test_bad_hit_arguments_name_the_argument(key, cost, error, culprit):
    limiter = Limiter(5, 60, backend=MemoryBackend())
    with pytest.raises(error, match=culprit):
        limiter.hit(key, cost)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5/minute", Limit(5, 60)),
        ("100/10s", Limit(100, 10)),
        ("3/2h", Limit(3, 7200)),
        (" 7 / day ", Limit(7, 86400)),
        ("1/SECOND", Limit(1, 1)),
        ("9/5min", Limit(9, 300)),
    ],
)
def test_limit_strings(text, expected):
    assert parse_limits(text) == (expected,)


def test_every_form_of_limit_is_accepted():
    limiter = Limiter(["1/second", Limit(5, 60, name="burst"), (100, 3600)])
    assert [limit.name for limit in limiter.limits] == ["1/1s", "burst", "100/3600s"]
    assert Limiter(5, Rate.minute).limits == Limiter("5/minute").limits
