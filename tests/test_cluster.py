"""luathrottle on a real local Redis Cluster: three primaries with replicas."""

import io
import multiprocessing
import re
import threading
import time
from collections import Counter

import pytest
import redis.asyncio.cluster
import redis.cluster
from django.http import HttpResponse

from cluster_harness import LocalCluster
from cluster_worker import hit_keys_from_threads
from luathrottle import (
    AsyncLimiter,
    BackendError,
    LeakyBucket,
    Limit,
    Limiter,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.cli import main
from luathrottle.django import SyncThrottle, throttle
from luathrottle.django.cache_keys import BaseThrottleCacheKey
from luathrottle.scripts import all_scripts, get_script
from redis_py import replica_reads
from states import limiter_keys, read_state, script_call, store_keys

pytestmark = pytest.mark.redis


@pytest.fixture
def cluster_client(redis_cluster):
    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    client.flushall()
    yield client
    client.close()


def owner(client, key):
    return client.get_node_from_key(key).name


def keys_on_every_primary(client, per_primary):
    """Identities whose keys land ``per_primary`` on each of the primaries."""
    limiter = Limiter(1, 60)
    chosen, per_node = [], Counter()
    for index in range(10_000):
        key = f"client-{index}"
        node = owner(client, limiter_keys(limiter, key)[0])
        if per_node[node] < per_primary:
            per_node[node] += 1
            chosen.append(key)
        if len(chosen) == 3 * per_primary:
            return chosen
    raise AssertionError(f"keys did not spread: {per_node}")


def test_all_keys_of_an_identity_share_one_slot(cluster_client):
    limits = [Limit(1, 1), Limit(5, 60), Limit(100, 3600)]
    keys = Limiter(limits, algorithm=SimpleRate(), prefix="lt").state_keys("user-1")
    keys += Limiter(
        limits, algorithm=SimpleRate(), prefix="lt", scope="view-a:throttle-b"
    ).state_keys("user-1")
    assert len(set(keys)) == 6
    slots = {cluster_client.keyslot(key) for key in keys}
    assert len(slots) == 1


@pytest.mark.parametrize("identity", ["{a}", "{}", "x{b}y", "}{", "{" * 50])
def test_braces_in_identities_cannot_pick_the_slot(identity):
    key = limiter_keys(Limiter(1, 60), identity)[0]
    tag = re.search(r"\{(.*?)\}", key).group(1)
    assert "{" not in tag
    assert "}" not in tag
    assert len(tag) == 12


def test_processes_admit_exactly_the_limit_across_nodes(redis_cluster, cluster_client):
    keys = keys_on_every_primary(cluster_client, 3)
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        results = pool.starmap(
            hit_keys_from_threads, [(redis_cluster.url, keys, 15, 3, 8)] * 3
        )
    totals = Counter()
    for result in results:
        totals.update(result)
    assert totals == dict.fromkeys(keys, 15)  # 72 attempts per key


def test_multi_limit_decisions_on_a_cluster(cluster_client):
    limiter = Limiter(
        ["2/second", "3/minute"],
        algorithm=LeakyBucket(),
        backend=SyncRedis(cluster_client),
    )
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(
    ("algorithm", "hourly_left"),
    [
        (SimpleRate(), 3),
        (LeakyBucket(), 3),
        (TokenBucket(burst=2), 0),
        (SlidingWindow(), 3),
    ],
    ids=repr,
)
def test_every_algorithm_decides_on_every_primary(
    cluster_client, algorithm, hourly_left
):
    """Keys hash-tagged by identity: every limit of one identity, on
    whichever primary owns it, is one script call."""
    limiter = Limiter(
        ["2/minute", "5/hour"], algorithm=algorithm, backend=SyncRedis(cluster_client)
    )
    for key in keys_on_every_primary(cluster_client, 2):
        decisions = [limiter.hit(key) for _ in range(3)]
        assert [d.allowed for d in decisions] == [True, True, False]
        assert [item.remaining for item in decisions[1].limits] == [0, hourly_left]
        assert decisions[2].retry_after > 0


async def test_async_cluster_client(redis_cluster, cluster_client):
    client = redis.asyncio.cluster.RedisCluster.from_url(redis_cluster.url)
    limiter = AsyncLimiter(2, 60, backend=AsyncRedis(client))
    for key in keys_on_every_primary(cluster_client, 3):
        assert [(await limiter.hit(key)).allowed for _ in range(3)] == [
            True,
            True,
            False,
        ]
    await client.aclose()


def test_decisions_never_read_from_replicas(redis_cluster, cluster_client):
    client = redis.cluster.RedisCluster.from_url(redis_cluster.url, **replica_reads())
    limiter = Limiter(3, 60, backend=SyncRedis(client))
    replicas = [node for node in client.get_replicas()]
    assert len(replicas) == 3
    client.config_resetstat(target_nodes=replicas)
    for key in keys_on_every_primary(cluster_client, 3):
        assert [limiter.hit(key).allowed for _ in range(4)] == [True] * 3 + [False]
        assert limiter.peek(key).remaining == 0
    stats = client.info("commandstats", target_nodes=replicas)
    assert not any(
        f"cmdstat_{name}" in node_stats
        for node_stats in stats.values()
        for name in ("evalsha", "fcall", "fcall_ro")
    )
    client.close()


def test_noscript_is_recovered_after_a_node_restart(redis_cluster, cluster_client):
    limiter = Limiter(5, 60, backend=SyncRedis(cluster_client))
    keys = keys_on_every_primary(cluster_client, 3)
    for key in keys:
        limiter.hit(key)
    port = redis_cluster.primary_ports()[0]
    redis_cluster.stop_node(port)
    redis_cluster.start_node(port)
    redis_cluster.wait_healthy()
    sha = get_script("fixed_window").sha
    with redis_cluster.client(port) as node:
        assert node.script_exists(sha) == [False]
    assert all(limiter.hit(key).allowed for key in keys)
    with redis_cluster.client(port) as node:
        assert node.script_exists(sha) == [True]


def test_functions_on_a_cluster_survive_function_flush_on_one_node(
    redis_cluster, cluster_client
):
    """FCALL on a cluster, asked for: a node that lost the library loads it
    again at its first call, and no call counts twice."""
    limiter = Limiter(10, 60, backend=SyncRedis(cluster_client, functions=True))
    library = limiter.script.library.name
    keys = keys_on_every_primary(cluster_client, 3)
    for key in keys:
        assert limiter.hit(key).remaining == 9
    # Each primary in turn lacks it: whichever place it has among the
    # primaries, the others' "already exists" never keeps the load from it.
    ports = redis_cluster.primary_ports()
    for flushed, port in enumerate(ports, start=1):
        with redis_cluster.client(port) as node:
            node.function_flush()
            assert node.function_list(library=library) == []
        assert [limiter.hit(key).remaining for key in keys] == [9 - flushed] * len(keys)
        with redis_cluster.client(port) as node:
            assert node.function_list(library=library) != []
    assert limiter.peek(keys[0]).remaining == 6
    # A pipeline over every node, one of which lost the library again.
    with redis_cluster.client(ports[0]) as node:
        node.function_flush()
    backend = SyncRedis(cluster_client, functions=True)
    calls = [script_call(limiter, key) for key in keys]
    assert [reply[2] for reply in backend.run_scripts(calls)] == [5] * len(keys)
    assert backend.uses_functions
    for primary in redis_cluster.primary_ports():
        with redis_cluster.client(primary) as node:
            assert node.function_list(library=library) != []


async def test_async_functions_on_a_cluster_survive_function_flush(
    redis_cluster, cluster_client
):
    client = redis.asyncio.cluster.RedisCluster.from_url(redis_cluster.url)
    backend = AsyncRedis(client, functions=True)
    limiter = AsyncLimiter(5, 60, backend=backend)
    keys = keys_on_every_primary(cluster_client, 1)
    assert [(await limiter.hit(key)).remaining for key in keys] == [4] * len(keys)
    with redis_cluster.client(redis_cluster.primary_ports()[1]) as node:
        node.function_flush()
    calls = [script_call(limiter, key) for key in keys]
    replies = await backend.arun_scripts(calls)
    assert [reply[2] for reply in replies] == [3] * len(keys)
    assert [(await limiter.peek(key)).remaining for key in keys] == [3] * len(keys)
    assert backend.uses_functions
    await client.aclose()


def run_cli(*argv):
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_scripts_check_and_load_act_on_every_primary(redis_cluster, cluster_client):
    url = redis_cluster.url
    run_cli("scripts", "load", "--url", url, "--cluster")
    lacking = redis_cluster.primary_ports()[1]
    with redis_cluster.client(lacking) as node:
        node.script_flush()
        node.function_flush()
    status, output = run_cli("scripts", "check", "--url", url, "--cluster")
    assert status == 1
    missing = [line for line in output.splitlines() if "MISSING" in line]
    # Each script, and its library.
    assert len(missing) == 2 * len(all_scripts())
    assert all(line.startswith(f"127.0.0.1:{lacking}\t") for line in missing)
    assert output.count("\tok\t") == 2 * 2 * len(all_scripts())

    status, output = run_cli("scripts", "load", "--url", url, "--cluster")
    assert status == 0
    # Every script everywhere; the libraries where they were missing only.
    assert output.count("\tloaded\t") == 4 * len(all_scripts())
    assert output.count("\tpresent\tlibrary\t") == 2 * len(all_scripts())
    status, output = run_cli("scripts", "check", "--url", url, "--cluster")
    assert status == 0
    assert "MISSING" not in output

    # Prune deletes another build's library from every primary.
    other = "luathrottle_fw5_000000000000"
    code = f"#!lua name={other}\nredis.register_function('{other}', function() end)"
    ports = redis_cluster.primary_ports()
    for port in ports:
        with redis_cluster.client(port) as node:
            node.function_load(code)
    status, output = run_cli("scripts", "prune", "--url", url, "--cluster")
    assert status == 0
    assert sorted(output.splitlines()) == sorted(
        f"127.0.0.1:{port}\tdeleted\tlibrary\t{other}" for port in ports
    )
    assert run_cli("scripts", "check", "--url", url, "--cluster")[0] == 0


def test_failover_mid_traffic_over_admits_only_what_lost_writes_explain(redis_url):
    """Kill a primary under traffic; its replica takes over.

    Writes the dead primary acknowledged but had not replicated are lost, and
    the new primary admits those units again. A key's over-admission is then
    at most its lost writes (admitted minus what the store still holds, when
    that is positive), and
    keys on the other shards stay exact. Errors (BackendError: there is no
    failure policy yet) happen only while the slot has no primary.
    """
    cluster = LocalCluster(primaries=3, replicas_per_primary=1, node_timeout_ms=1000)
    cluster.start()
    try:
        figures = run_failover(cluster, limit=1500, per_primary=2)
    finally:
        cluster.stop()
    print("failover figures:", {k: v for k, v in figures.items() if k != "errors_at"})
    for key, row in figures["keys"].items():
        assert row["stored"] <= 1500, key
        assert row["over_admitted"] <= row["lost_writes"], key
        if not row["on_failed_primary"]:
            assert (row["admitted"], row["lost_writes"]) == (1500, 0), key
    window = (figures["kill_at"], figures["recovered_at"])
    assert all(window[0] <= at <= window[1] for at in figures["errors_at"])


def run_failover(cluster, limit, per_primary):
    """Traffic from four threads; SIGKILL one primary once 1 limit's worth
    was admitted; run on until every key is denied after the takeover."""
    client = redis.cluster.RedisCluster.from_url(
        cluster.url, socket_timeout=1, socket_connect_timeout=1
    )
    limiter = Limiter(limit, 3600, backend=SyncRedis(client))
    keys = keys_on_every_primary(client, per_primary)
    state_key = {key: limiter_keys(limiter, key)[0] for key in keys}
    victim = owner(client, state_key[keys[0]])
    on_victim = {key for key in keys if owner(client, state_key[key]) == victim}
    traffic = Traffic(limiter, keys)
    traffic.start()
    try:
        traffic.wait_for(lambda: sum(traffic.admitted.values()) >= limit)
        victim_port = int(victim.rsplit(":", 1)[1])
        replica_port = cluster.replica_of(victim_port)
        kill_at = time.monotonic()
        cluster.stop_node(victim_port, kill=True)
        LocalCluster._wait(
            lambda: (
                cluster.client(replica_port).info("replication")["role"] == "master"
            ),
            "the replica to take over",
        )
        cluster.wait_healthy()
        traffic.recovered.set()
        recovered_at = time.monotonic()
        traffic.wait_for(lambda: traffic.denied_after_recovery >= set(keys))
    finally:
        traffic.stop()
    rows = {}
    for key in keys:
        value = read_state(client, state_key[key])
        # the state is the window's end, the count and the duration
        stored = int(value.split(":")[1]) if value else 0
        admitted = traffic.admitted[key]
        rows[key] = {
            "on_failed_primary": key in on_victim,
            "admitted": admitted,
            "stored": stored,
            # A hit whose reply died with the killed primary may still have
            # been written and replicated: the store can then hold more than
            # the client saw admitted, which is no lost write.
            "lost_writes": max(admitted - stored, 0),
            "over_admitted": max(admitted - limit, 0),
        }
    client.close()
    errors_at = traffic.errors_at
    return {
        "keys": rows,
        "errors": len(errors_at),
        "errors_at": errors_at,
        "error_window_s": round(max(errors_at) - kill_at, 3) if errors_at else 0.0,
        "kill_at": kill_at,
        # redis-py may still be refreshing its slot map when the cluster is ok
        "recovered_at": recovered_at + 10,
    }


class Traffic:
    """Threads hitting every key in turn until stopped."""

    def __init__(self, limiter, keys, threads=4):
        self.limiter, self.keys = limiter, keys
        self.admitted, self.denied_after_recovery = Counter(), set()
        self.errors_at = []
        self.lock, self.stopping = threading.Lock(), threading.Event()
        self.recovered = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def wait_for(self, condition, timeout=90):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "traffic did not get there in time"
            time.sleep(0.01)

    def run(self):
        while not self.stopping.is_set():
            for key in self.keys:
                try:
                    allowed = self.limiter.hit(key).allowed
                except BackendError:
                    with self.lock:
                        self.errors_at.append(time.monotonic())
                    continue
                with self.lock:
                    if allowed:
                        self.admitted[key] += 1
                    elif self.recovered.is_set():
                        self.denied_after_recovery.add(key)


class HeaderKey(BaseThrottleCacheKey):
    """Counts requests by the X-Client header, before auth."""

    def __init__(self):
        super().__init__(runs_before_auth=True, name="client")

    def __call__(self, request):
        return request.headers.get("X-Client")


def header_keyed_view(backend):
    @throttle(
        SyncThrottle(3, 60, backend=backend),
        SyncThrottle(2, 60, backend=backend, cache_key=HeaderKey()),
    )
    def view(request):
        return HttpResponse("inside")

    return view


CLIENTS = ("a", "a", "a", "b", "b")


def test_one_stage_with_identities_on_several_slots(rf, cluster_client):
    """IP- and header-keyed throttles of one stage land on different slots:
    each identity is its own script call, both sent in one pipeline."""
    view = header_keyed_view(SyncRedis(cluster_client))
    primaries = cluster_client.get_primaries()
    cluster_client.config_resetstat(target_nodes=primaries)
    statuses = [
        view(rf.get("/", REMOTE_ADDR="203.0.113.9", HTTP_X_CLIENT=client)).status_code
        for client in CLIENTS
    ]
    # Across slots a request is not all or nothing: "a" is denied by its own
    # limit on the third request, yet that request counts against the IP,
    # which then denies the fourth.
    assert statuses == [200, 200, 429, 429, 429]
    stats = cluster_client.info("commandstats", target_nodes=primaries)
    calls = sum(
        node.get("cmdstat_evalsha", {}).get("calls", 0) for node in stats.values()
    )
    assert calls == 10  # two script calls per request, never CROSSSLOT


def test_one_server_keeps_identities_of_a_stage_in_one_call(rf, redis_client):
    """On one server the same stage is one script call, all or nothing."""
    view = header_keyed_view(SyncRedis(redis_client))
    redis_client.config_resetstat()
    statuses = [
        view(rf.get("/", REMOTE_ADDR="203.0.113.9", HTTP_X_CLIENT=client)).status_code
        for client in CLIENTS
    ]
    assert statuses == [200, 200, 429, 200, 429]
    assert redis_client.info("commandstats")["cmdstat_fcall"]["calls"] == 5


def test_ask_and_moved_during_a_slot_migration(redis_cluster, cluster_client):
    """Move the slot of an identity to another primary mid-use: the limiter
    follows ASK while the slot migrates and MOVED after, counting on."""
    limiter = Limiter(5, 3600, backend=SyncRedis(cluster_client))
    [key] = store_keys(limiter_keys(limiter, "migrating"))
    assert [limiter.hit("migrating").allowed for _ in range(2)] == [True, True]
    slot = cluster_client.keyslot(key)
    source = cluster_client.get_node_from_key(key)
    target = next(n for n in cluster_client.get_primaries() if n.name != source.name)
    ids = {
        name: info["node_id"] for name, info in cluster_client.cluster_nodes().items()
    }
    with (
        redis_cluster.client(source.port) as src,
        redis_cluster.client(target.port) as dst,
    ):
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source.name])
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target.name])
        src.execute_command(
            "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", key
        )
        assert limiter.hit("migrating").remaining == 2  # via ASK
        for port in redis_cluster.primary_ports():
            with redis_cluster.client(port) as node:
                node.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target.name])
    assert [limiter.hit("migrating").allowed for _ in range(3)] == [True, True, False]
    assert cluster_client.get_node_from_key(key).name == target.name


def test_cluster_backends_have_no_breaker_unless_given(cluster_client):
    from luathrottle import CircuitBreaker

    assert SyncRedis(cluster_client).breaker is None
    breaker = CircuitBreaker()
    assert SyncRedis(cluster_client, breaker=breaker).breaker is breaker
