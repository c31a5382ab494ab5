"""A backend of the wrong kind fails where it is given, naming what the user
built and what to write instead."""

import pytest
import redis
import redis.asyncio

from luathrottle import AsyncLimiter, Limiter
from luathrottle.asgi import RateLimitMiddleware
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.fastapi import SyncThrottle, Throttle
from luathrottle.flask import Throttle as FlaskThrottle


def app(scope, receive, send):
    raise AssertionError("never called")


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (
            lambda: Throttle("1/minute", backend=SyncRedis(redis.Redis())),
            "backend must be an AsyncBackend for luathrottle.fastapi.Throttle, got "
            "luathrottle.backends.redis.SyncRedis: give an AsyncRedis, or use "
            "luathrottle.fastapi.SyncThrottle for a sync backend",
        ),
        (
            lambda: SyncThrottle("1/minute", backend=redis.Redis()),
            "backend must be a SyncBackend for luathrottle.fastapi.SyncThrottle, "
            "got redis.client.Redis: wrap the client, SyncRedis(client)",
        ),
        (
            lambda: SyncThrottle("1/minute", backend="default"),
            "backend must be a SyncBackend for luathrottle.fastapi.SyncThrottle, "
            "got builtins.str: give a backend object, such as SyncRedis.from_url"
            "('redis://localhost:6379/0') or SyncDjangoCache(alias) for a Django "
            "cache",
        ),
        (
            lambda: Limiter(1, 60, backend=redis.asyncio.Redis()),
            "backend must be a SyncBackend for Limiter, got "
            "redis.asyncio.client.Redis: wrap the client, SyncRedis(client)",
        ),
        (
            lambda: AsyncLimiter(1, 60, backend=SyncRedis(redis.Redis())),
            "give an AsyncRedis, or use Limiter for a sync backend",
        ),
        (
            lambda: RateLimitMiddleware(
                app, "1/minute", backend=SyncRedis(redis.Redis())
            ),
            "backend must be an AsyncBackend for "
            "luathrottle.asgi.RateLimitMiddleware, got "
            "luathrottle.backends.redis.SyncRedis: give an AsyncRedis",
        ),
    ],
)
def test_the_message_names_the_fix(build, says):
    with pytest.raises(TypeError) as failed:
        build()
    assert says in str(failed.value)


def test_flask_names_itself_when_built():
    with pytest.raises(TypeError, match=r"for luathrottle\.flask\.Throttle, got "):
        FlaskThrottle(backend=AsyncRedis(redis.asyncio.Redis()))


def test_the_right_kinds_are_taken():
    assert Throttle("1/minute", backend=MemoryBackend())
    assert SyncThrottle("1/minute", backend=MemoryBackend())
