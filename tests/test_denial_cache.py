"""The denial cache (``cache_denials=``): exact against the store, bounded,
and safe under threads and tasks."""

import asyncio
import threading
import time

import hypothesis.strategies as st
import pytest
import redis
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from conftest import Clock
from luathrottle import (
    AsyncLimiter,
    LeakyBucket,
    Limiter,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.decision import Reason

LIMITS = [(3, 2), (5, 10)]
KEYS = ["a", "b", "c"]
# Per-call limits, as the docs' plans pattern passes them: some share the
# limiter's first limit, some have more limits than it, some fewer.
PLANS = [None, [(3, 2)], [(3, 2), (5, 10), (8, 30)], [(3, 2), (9, 10)], [(4, 2)]]
# Every algorithm, and buckets that hold fewer and more tokens than the
# limits' max_requests (a TokenBucket without burst decides as LeakyBucket).
ALGORITHMS = [
    SimpleRate(),
    LeakyBucket(),
    TokenBucket(burst=2),
    TokenBucket(burst=6),
    SlidingWindow(),
]
# The algorithms the cache replays from what any denial proves rather than
# by the script's arithmetic: see assert_within_the_promise.
GENERIC = (SlidingWindow,)


class CountingBackend(MemoryBackend):
    """The embedded backend, counting the script calls that reach it."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.calls = 0

    def run_script(self, script, keys, args):
        self.calls += 1
        return super().run_script(script, keys, args)

    def run_scripts(self, calls):
        return [self.run_script(*call) for call in calls]

    async def arun_scripts(self, calls):
        return self.run_scripts(calls)


class CountingRedis(SyncRedis):
    """SyncRedis, counting the script calls that reach the server."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.calls = 0

    def run_script(self, script, keys, args):
        self.calls += 1
        return super().run_script(script, keys, args)


def scaled(limits, scale):
    return None if limits is None else [(count, d * scale) for count, d in limits]


def assert_within_the_promise(replayed, store):
    """A generic replay's decision against the store's, with no other
    traffic: the same decision and reason, limit by limit, and the same
    reset_after (the instant the quota is whole again does not move without
    traffic); remaining is the denial's, and the store's can only have
    grown since; retry_after counts down from the denial's, so it is never
    later than the store's (the machine does not track which cost was
    denied; a test below pins the equal wait of the same cost)."""
    assert (replayed.allowed, replayed.reason) == (store.allowed, store.reason)
    assert not replayed.allowed
    if replayed.retry_after is not None:
        assert replayed.retry_after <= store.retry_after
    for mine, theirs in zip(replayed.limits, store.limits, strict=True):
        assert (mine.limit, mine.allowed, mine.reason, mine.reset_after) == (
            theirs.limit,
            theirs.allowed,
            theirs.reason,
            theirs.reset_after,
        )
        assert mine.remaining <= theirs.remaining
        assert (mine.retry_after is None) == (theirs.retry_after is None)
        if mine.retry_after is not None:
            assert mine.retry_after <= theirs.retry_after


class CacheAgreesWithTheStore(RuleBasedStateMachine):
    """Every decision of a limiter with the cache equals its twin's without
    one (within the generic replay's promise, for SlidingWindow): same
    backend and clock, a prefix of its own. The twin sees every call, so
    both stores keep the same state."""

    algorithm = ALGORITHMS[0]
    backend_kind = "memory"
    counting = "all_or_nothing"
    # Durations are multiplied by this; steps of the clock, in microseconds.
    scale = 1
    steps = st.integers(min_value=0, max_value=3_000_000)

    @initialize(size=st.sampled_from([1, 2, 100]))
    def build(self, size):
        self.clock = Clock()
        if self.backend_kind == "memory":
            self.backend = CountingBackend(self.clock)
        else:
            client = redis.Redis.from_url(self.redis_url)
            client.flushdb()
            self.backend = CountingRedis(client)
        self.generic = isinstance(self.algorithm, GENERIC)
        common = {
            "algorithm": self.algorithm,
            "backend": self.backend,
            "clock": self.clock,
            "counting": self.counting,
        }
        limits = scaled(LIMITS, self.scale)
        self.cached = Limiter(limits, prefix="cached", cache_denials=size, **common)
        self.twin = Limiter(limits, prefix="twin", **common)

    def teardown(self):
        if self.backend_kind == "redis" and hasattr(self, "backend"):
            self.backend.client.close()

    def compare(self, method, key, cost, limits=None):
        limits = scaled(limits, self.scale)
        calls = self.backend.calls
        with_cache = getattr(self.cached, method)(key, cost, limits)
        replayed = self.backend.calls == calls
        store = getattr(self.twin, method)(key, cost, limits)
        if replayed:
            event("answered by the cache")
        if replayed and self.generic:
            assert_within_the_promise(with_cache, store)
        else:
            assert with_cache == store
        if (
            method == "hit"
            and not replayed
            and with_cache.reason is Reason.LIMIT_EXCEEDED
            and (
                self.counting != "each" or not any(d.allowed for d in with_cache.limits)
            )
        ):
            # The denial the store just gave a hit is the cache's to give
            # again, whole: at the same instant nothing has refilled. A
            # peek's is not remembered (``luathrottle._denials``). Under
            # "each", only when no limit counted the hit.
            calls = self.backend.calls
            assert self.cached.peek(key, cost, limits) == with_cache
            assert self.backend.calls == calls

    @rule(key=st.sampled_from(KEYS), cost=st.integers(1, 7))
    def hit(self, key, cost):
        self.compare("hit", key, cost)

    @rule(key=st.sampled_from(KEYS), cost=st.integers(1, 7))
    def peek(self, key, cost):
        self.compare("peek", key, cost)

    @rule(
        key=st.sampled_from(KEYS), cost=st.integers(1, 4), plan=st.sampled_from(PLANS)
    )
    def hit_under_a_plan(self, key, cost, plan):
        self.compare("hit", key, cost, plan)

    @rule(key=st.sampled_from(KEYS))
    def reset(self, key):
        self.cached.reset(key)
        self.twin.reset(key)

    @rule(data=st.data())
    def advance(self, data):
        self.clock.advance(data.draw(self.steps) / 1_000_000)

    @invariant()
    def bounded(self):
        if hasattr(self, "cached"):
            assert len(self.cached.denials) <= self.cached.denials.size


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=repr)
def test_the_cache_agrees_with_the_store_on_the_embedded_backend(algorithm):
    class OnMemory(CacheAgreesWithTheStore):
        pass

    OnMemory.algorithm = algorithm
    OnMemory.TestCase.settings = settings(
        max_examples=60,
        stateful_step_count=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    OnMemory.TestCase().runTest()


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=repr)
def test_the_cache_agrees_with_the_store_on_redis(redis_url, algorithm):
    class OnRedis(CacheAgreesWithTheStore):
        backend_kind = "redis"
        # Keys expire in real time on the server, after the life their state
        # has on the limiter's clock, which only the advance steps move: with
        # durations ten times as long, the shortest-lived state (one drain
        # or token interval of a 4/2 s limit, 500 ms) lives 5 s, far longer
        # than an example runs, however loaded the machine.
        scale = 10
        steps = st.integers(min_value=0, max_value=12).map(lambda n: n * 2_500_000)

    OnRedis.algorithm = algorithm
    OnRedis.redis_url = redis_url
    OnRedis.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    OnRedis.TestCase().runTest()


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=repr)
def test_the_cache_agrees_with_the_store_counting_each(algorithm):
    """Under counting="each" a denied hit still counts in the limits that
    admit it: the cache answers only what every limit denies."""

    class Each(CacheAgreesWithTheStore):
        counting = "each"

    Each.algorithm = algorithm
    Each.TestCase.settings = settings(
        max_examples=60,
        stateful_step_count=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    Each.TestCase().runTest()


def test_a_hammering_client_reaches_the_store_once_per_window(clock):
    backend = CountingBackend(clock)
    limiter = Limiter(5, 60, backend=backend, clock=clock, cache_denials=True)
    decisions = [limiter.hit("k") for _ in range(250)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 245
    # Five admitted, one denial learned; the other 244 never left the process.
    assert backend.calls == 6
    clock.advance(20)
    cached = limiter.hit("k")
    assert (cached.allowed, cached.remaining, cached.retry_after) == (False, 0, 40)
    assert cached.reason is Reason.LIMIT_EXCEEDED
    assert backend.calls == 6
    clock.advance(40)
    assert limiter.hit("k").allowed
    assert backend.calls == 7


@pytest.mark.parametrize("algorithm", [SimpleRate, LeakyBucket])
def test_a_denial_is_never_replayed_against_other_limits(
    sync_backend, clock, algorithm
):
    # The docs' plans pattern, with plans that share their first limit;
    # the free plan's denial comes from its second.
    plans = {
        "free": ["50/minute", "2/hour"],
        "pro": ["50/minute", "1000/hour"],
        "team": ["50/minute", "1000/hour", "5000/day"],
    }
    common = {"algorithm": algorithm(), "backend": sync_backend, "clock": clock}
    cached = Limiter(plans["free"], prefix="cached", cache_denials=True, **common)
    twin = Limiter(plans["free"], prefix="twin", **common)
    calls = [("free", 3), ("pro", 20), ("free", 1), ("team", 20), ("free", 1)]
    allowed = []
    for plan, times in calls:
        for _ in range(times):
            # More limits than the remembered denial were an IndexError.
            decision = cached.hit("user", limits=plans[plan])
            assert decision == twin.hit("user", limits=plans[plan])
            allowed.append(decision.allowed)
    # After the free plan's denial, the pro plan is the store's to decide.
    assert allowed[:24] == [True, True, False] + [True] * 20 + [False]


SCRIPT_COMMANDS = ("fcall", "fcall_ro", "evalsha", "eval")


def script_calls(client) -> int:
    stats = client.info("commandstats")
    return sum(
        stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in SCRIPT_COMMANDS
    )


@pytest.mark.parametrize(
    "algorithm",
    [SimpleRate(), LeakyBucket(), TokenBucket(burst=10), SlidingWindow()],
    ids=repr,
)
@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_hot_key_costs_at_most_one_store_call_in_twenty_requests(
    request, clock, store, algorithm
):
    # The benchmark's hot key: one identity sends 50 times its limit, here
    # a millisecond apart, and every answer is the store's.
    if store == "memory":
        backend = CountingBackend(clock)
    else:
        client = request.getfixturevalue("redis_client")
        backend = SyncRedis(client)
        client.config_resetstat()
    common = {"algorithm": algorithm, "clock": clock}
    cached = Limiter("20/hour", backend=backend, cache_denials=True, **common)
    twin = Limiter("20/hour", backend=MemoryBackend(clock=clock), **common)
    for _ in range(1000):
        assert cached.hit("hot") == twin.hit("hot")
        clock.advance(0.001)
    calls = backend.calls if store == "memory" else script_calls(client)
    assert calls / 1000 <= 0.05


def test_a_sliding_window_replay_keeps_the_denials_remaining_and_waits_no_longer(
    clock,
):
    backend = CountingBackend(clock)
    common = {"algorithm": SlidingWindow(), "backend": backend, "clock": clock}
    cached = Limiter(10, 10, cache_denials=True, **common)
    # The same state keys, without the cache: what the store says.
    store = Limiter(10, 10, **common)
    assert cached.hit("k", cost=10).allowed
    # 2 s into the next window the previous one weighs 8 of 10: a cost of 4
    # fits 2 s later, when it weighs 6.
    clock.advance(12)
    denied = cached.hit("k", cost=4)
    assert (denied.remaining, denied.retry_after) == (2, 2)
    clock.advance(1)
    calls = backend.calls
    same, larger = cached.peek("k", cost=4), cached.peek("k", cost=5)
    assert backend.calls == calls
    # The store has 3 left by now; the replay keeps the denial's 2, and
    # counts the same cost's wait down as the store does.
    assert (same.remaining, store.peek("k", cost=4).remaining) == (2, 3)
    assert same.retry_after == store.peek("k", cost=4).retry_after == 1
    # A larger cost waits at the store until the previous window weighs 5,
    # 2 s; the replay only knows that the cost of 4 waits 1 s.
    assert (larger.retry_after, store.peek("k", cost=5).retry_after) == (1, 2)
    assert same.reset_after == larger.reset_after == store.peek("k").reset_after
    # A smaller cost may fit: the store decides, and admits it.
    calls = backend.calls
    assert cached.hit("k", cost=3).allowed
    assert backend.calls == calls + 1


def test_a_denial_under_one_plan_leaves_another_to_the_store(clock):
    backend = CountingBackend(clock)
    limiter = Limiter(["2/hour"], backend=backend, clock=clock, cache_denials=True)
    free, pro = ["2/hour"], ["2/hour", "1000/day"]
    assert [limiter.hit("user", limits=free).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    # The pro plan counts in its own state keys of the shared first limit
    # too, so the store still holds the free plan's two hits there: it
    # denies, and the decision comes from the store, not from the replay
    # of the free plan's one-limit denial.
    before = backend.calls
    decision = limiter.hit("user", limits=pro)
    assert backend.calls == before + 1
    assert len(decision.limits) == 2
    assert decision.limits[1].remaining == 1000


def test_a_reset_forgets_denials_under_per_call_limits_too(clock):
    backend = CountingBackend(clock)
    limiter = Limiter(["2/hour"], backend=backend, clock=clock, cache_denials=True)
    plan = ["5/day", "2/hour"]
    for _ in range(3):
        limiter.hit("user", limits=plan)
    assert not limiter.hit("user", limits=plan).allowed
    # The reset deletes the limiter's own 2/hour state, which the plan's
    # denial came from: the next call under the plan asks the store.
    limiter.reset("user")
    assert limiter.hit("user", limits=plan).allowed


def test_smaller_costs_that_might_fit_go_to_the_store(clock):
    backend = CountingBackend(clock)
    limiter = Limiter(5, 60, backend=backend, clock=clock, cache_denials=True)
    limiter.hit("k", cost=3)
    assert not limiter.hit("k", cost=3).allowed
    calls = backend.calls
    assert not limiter.hit("k", cost=4).allowed  # proven by the cache
    assert backend.calls == calls
    assert limiter.hit("k", cost=2).allowed  # fits: the store decides
    assert backend.calls == calls + 1
    assert not limiter.hit("k", cost=1).allowed


def test_reset_through_the_limiter_clears_the_entry(clock):
    backend = CountingBackend(clock)
    limiter = Limiter(1, 60, backend=backend, clock=clock, cache_denials=True)
    limiter.hit("k")
    assert not limiter.hit("k").allowed
    assert len(limiter.denials) == 1
    limiter.reset("k")
    assert len(limiter.denials) == 0
    assert limiter.hit("k").allowed


def test_a_reset_from_elsewhere_is_seen_at_retry_after(clock):
    backend = CountingBackend(clock)
    limiter = Limiter(1, 60, backend=backend, clock=clock, cache_denials=True)
    elsewhere = Limiter(1, 60, backend=backend, clock=clock)
    limiter.hit("k")
    assert not limiter.hit("k").allowed
    elsewhere.reset("k")
    clock.advance(59.999999)
    assert not limiter.hit("k").allowed  # the documented staleness
    clock.advance(0.000001)
    assert limiter.hit("k").allowed


def test_cost_exceeding_a_limit_is_not_remembered(clock):
    backend = CountingBackend(clock)
    limiter = Limiter(5, 60, backend=backend, clock=clock, cache_denials=True)
    assert limiter.hit("k", cost=6).reason is Reason.COST_EXCEEDS_LIMIT
    assert len(limiter.denials) == 0


def test_the_cache_holds_at_most_size_identities(clock):
    backend = CountingBackend(clock)
    limiter = Limiter(1, 60, backend=backend, clock=clock, cache_denials=3)
    for key in "abcde":
        limiter.hit(key)
        limiter.hit(key)
    assert len(limiter.denials) == 3
    # The least recently used went first: "a" and "b" reach the store again.
    calls = backend.calls
    assert not limiter.hit("e").allowed
    assert not limiter.hit("c").allowed
    assert backend.calls == calls
    assert not limiter.hit("a").allowed
    assert backend.calls == calls + 1
    # True keeps 10,000 identities, as the docstrings and the docs say.
    assert Limiter(1, 60, cache_denials=True).denials.size == 10_000


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("yes", TypeError, "cache_denials must be a bool"),
        (0, ValueError, "cache_denials must be between 1 and 1,000,000"),
        (10**27, ValueError, "cache_denials must be between 1 and 1,000,000"),
        (2.5, TypeError, "cache_denials must be a bool"),
    ],
)
def test_bad_cache_denials_are_refused_naming_the_argument(value, error, match):
    with pytest.raises(error, match=match):
        Limiter(1, 60, cache_denials=value)


def test_without_a_clock_the_cache_counts_on_the_monotonic_clock(redis_client):
    limiter = Limiter(2, 60, backend=SyncRedis(redis_client), cache_denials=True)
    limiter.hit("k")
    limiter.hit("k")
    redis_client.config_resetstat()
    decisions = [limiter.hit("k") for _ in range(50)]
    assert not any(decision.allowed for decision in decisions)
    waits = [decision.retry_after for decision in decisions]
    assert waits == sorted(waits, reverse=True)  # counting down
    assert 59 < waits[-1] <= 60
    stats = redis_client.info("commandstats")
    assert (
        sum(stats.get(f"cmdstat_{n}", {}).get("calls", 0) for n in ("fcall", "evalsha"))
        == 1
    )


def test_threads_share_one_cache_exactly(clock):
    backend = CountingBackend(clock)
    limiter = Limiter(100, 60, backend=backend, clock=clock, cache_denials=16)
    allowed = []
    lock = threading.Lock()

    def traffic(identity):
        mine = sum(limiter.hit(f"id{identity % 8}").allowed for _ in range(400))
        with lock:
            allowed.append(mine)

    threads = [threading.Thread(target=traffic, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert sum(allowed) == 8 * 100  # each identity admitted exactly its limit
    assert len(limiter.denials) == 8
    assert backend.calls < 8 * 400 / 2


async def test_async_limiter_and_tasks(async_redis_client, clock):
    backend = AsyncRedis(async_redis_client)
    limiter = AsyncLimiter(3, 60, backend=backend, clock=clock, cache_denials=True)
    decisions = await asyncio.gather(*(limiter.hit("k") for _ in range(40)))
    assert sum(decision.allowed for decision in decisions) == 3
    # An admission answered after a denial drops what the denial taught, as
    # it spent quota; one more call learns the denial again.
    assert not (await limiter.hit("k")).allowed
    await async_redis_client.config_resetstat()
    assert not (await limiter.hit("k")).allowed
    assert not (await limiter.peek("k")).allowed
    stats = await async_redis_client.info("commandstats")
    assert not any(name.startswith("cmdstat_fcall") for name in stats)
    await limiter.reset("k")
    assert (await limiter.hit("k")).allowed


def test_the_monotonic_clock_is_in_microseconds():
    cache = Limiter(1, 60, algorithm=SimpleRate(), cache_denials=2).denials
    before = time.monotonic_ns() // 1000
    first = cache.now()
    assert 0 < before <= first <= cache.now() <= time.monotonic_ns() // 1000
