"""Several script calls at once: pipelined on Redis, each atomic on its own."""

import pytest
import redis.asyncio.cluster
import redis.cluster

from luathrottle import LeakyBucket, Limit, Limiter, SimpleRate
from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.decision import Decision

LIMITS = [Limit(2, 60)]


def script_call(algorithm: BaseThrottleAlgorithm, identity: str):
    script = algorithm.script
    limiter = Limiter(LIMITS, algorithm=algorithm, prefix="lt", scope="pipeline")
    keys = limiter.state_keys(identity)
    args = algorithm.pack_args("hit", 1, None, LIMITS)
    return (script, *script.words(keys, args))


def calls():
    return [
        script_call(SimpleRate(), "alice"),
        script_call(LeakyBucket(), "bob"),
        script_call(SimpleRate(), "carol"),
    ]


def remaining(replies):
    return [Decision.from_reply(LIMITS, reply).remaining for reply in replies]


def test_run_scripts_runs_every_call(sync_backend):
    assert remaining(sync_backend.run_scripts(calls())) == [1, 1, 1]
    assert remaining(sync_backend.run_scripts(calls())) == [0, 0, 0]
    assert sync_backend.run_scripts([]) == []


async def test_arun_scripts_runs_every_call(async_backend):
    assert remaining(await async_backend.arun_scripts(calls())) == [1, 1, 1]
    assert remaining(await async_backend.arun_scripts(calls())) == [0, 0, 0]


def test_noscript_in_a_pipeline_reruns_only_what_failed(redis_client):
    backend = SyncRedis(redis_client, functions=False)
    backend.run_script(*script_call(SimpleRate(), "warm-up"))
    redis_client.script_flush()
    redis_client.script_load(SimpleRate().script.source)
    # The leaky bucket call meets NOSCRIPT; the two others must count once.
    assert remaining(backend.run_scripts(calls())) == [1, 1, 1]


async def test_async_noscript_in_a_pipeline_reruns_only_what_failed(async_redis_client):
    backend = AsyncRedis(async_redis_client, functions=False)
    await async_redis_client.script_flush()
    await async_redis_client.script_load(LeakyBucket().script.source)
    assert remaining(await backend.arun_scripts(calls())) == [1, 1, 1]
    assert remaining(await backend.arun_scripts(calls())) == [0, 0, 0]


@pytest.mark.redis
def test_cluster_pipeline_spans_slots(redis_cluster):
    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    client.flushall()
    client.script_flush()
    backend = SyncRedis(client)
    slots = {client.keyslot(call[1][0]) for call in calls()}
    assert len(slots) == 3
    assert remaining(backend.run_scripts(calls())) == [1, 1, 1]
    assert remaining(backend.run_scripts(calls())) == [0, 0, 0]
    client.close()


@pytest.mark.redis
async def test_async_cluster_pipeline_spans_slots(redis_cluster):
    client = redis.asyncio.cluster.RedisCluster.from_url(redis_cluster.url)
    await client.flushall()
    await client.script_flush()
    backend = AsyncRedis(client)
    assert remaining(await backend.arun_scripts(calls())) == [1, 1, 1]
    assert remaining(await backend.arun_scripts(calls())) == [0, 0, 0]
    await client.aclose()


def test_a_lone_call_skips_the_pipeline_and_survives_noscript(redis_client):
    backend = SyncRedis(redis_client, functions=False)
    redis_client.script_flush()
    call = script_call(LeakyBucket(), "dave")
    assert remaining(backend.run_scripts([call])) == [1]
    assert redis_client.script_exists(call[0].sha) == [True]
    assert remaining(backend.run_scripts([call])) == [0]


async def test_async_lone_call_survives_noscript(async_redis_client):
    backend = AsyncRedis(async_redis_client, functions=False)
    await async_redis_client.script_flush()
    call = script_call(SimpleRate(), "erin")
    assert remaining(await backend.arun_scripts([call])) == [1]
    assert await async_redis_client.script_exists(call[0].sha) == [True]
    assert remaining(await backend.arun_scripts([call])) == [0]
