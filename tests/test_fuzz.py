"""Fuzzing the paths from a caller's arguments to a script call and back.

Whatever goes in, the limit parser and the limiters' constructors raise only
ValueError or TypeError; keys stay short, ASCII and tagged once whatever the
identity; arguments reach the script as strings; replies decode or raise
ValueError; and random hits on the embedded backend never raise.
"""

import itertools
import re
import time

import pytest
import redis
import redis.asyncio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from luathrottle import (
    AsyncLimiter,
    ConcurrencyLimiter,
    Decision,
    LeakyBucket,
    Limit,
    Limiter,
    Reason,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.decision import LimitDecision, deciding_limit
from luathrottle.django import SyncThrottle
from luathrottle.django.cache_keys import BaseThrottleCacheKey
from luathrottle.rates import MAX_DURATION, MAX_REQUESTS, parse_limits
from luathrottle.scripts import all_scripts
from states import hash_tag, limiter_keys

FUZZ = settings(max_examples=300, deadline=None)
#: For the tests whose examples hold 10,000-character identities.
FUZZ_LONG = settings(max_examples=150, deadline=None)

UNITS = ["s", "sec", "m", "minute", "hours", "d", "days", "ms", "y", ""]
#: Strings a limit parser meets: near-misses of "5/minute" and anything else.
limit_texts = st.one_of(
    st.text(max_size=30),
    st.builds(
        "{}{}/{}{}{}".format,
        st.sampled_from(["", " ", "\t"]),
        st.integers(-3, 10**20),
        st.sampled_from(["", "0", "1", "10", "\u0663", "99999999999"]),
        st.sampled_from([*UNITS, *(unit.upper() for unit in UNITS)]),
        st.sampled_from(["", " ", "\n", "x"]),
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(max_size=4),
    limit_texts,
)
#: Limits as a caller writes them, so that a good share of inputs parse.
good_specs = st.one_of(
    st.builds(
        "{}/{}{}".format,
        st.integers(1, 10**6),
        st.sampled_from(["", "1", "10"]),
        st.sampled_from(["s", "minute", "h", "days"]),
    ),
    st.builds(Limit, st.integers(1, 1000), st.integers(1, 10**6)),
    st.tuples(st.integers(1, 1000), st.integers(1, 10**6)),
)
specs = st.one_of(
    good_specs,
    limit_texts,
    st.tuples(scalars, scalars),
    st.tuples(st.integers(0, 1000), st.integers(0, 10**10)),
    st.tuples(scalars),
    st.tuples(scalars, scalars, scalars),
)
anything = st.one_of(
    scalars,
    specs,
    st.lists(st.one_of(specs, scalars), max_size=4),
    st.lists(st.one_of(specs, scalars), max_size=4).map(tuple),
    st.dictionaries(limit_texts, scalars, max_size=2),
)
#: (max_requests, duration_in_seconds): mostly well formed, so that both the
#: accepting and the refusing paths get their share.
limit_arguments = st.one_of(
    st.tuples(good_specs, st.none()),
    st.tuples(st.lists(good_specs, min_size=1, max_size=3), st.none()),
    st.tuples(st.integers(1, 10**6), st.integers(1, 10**6)),
    st.tuples(
        anything,
        st.one_of(st.none(), st.integers(), st.floats(), st.booleans(), limit_texts),
    ),
)


@FUZZ
@given(arguments=limit_arguments)
def test_parse_limits_raises_only_value_or_type_errors(arguments):
    max_requests, duration = arguments
    try:
        limits = parse_limits(max_requests, duration)
    except (ValueError, TypeError):
        return
    assert limits
    assert all(isinstance(limit, Limit) for limit in limits)
    # Each limit's name and its (max_requests, duration) pair read back alike.
    assert parse_limits([limit.name for limit in limits]) == limits
    pairs = [(limit.max_requests, limit.duration) for limit in limits]
    assert parse_limits(pairs) == limits


MEMORY = MemoryBackend()
# Clients that never connect: building a limiter does no I/O.
SYNC_REDIS = SyncRedis(redis.Redis())
ASYNC_REDIS = AsyncRedis(redis.asyncio.Redis())
#: Every algorithm, the token bucket with and without a burst of its own.
ALGORITHMS = [
    SimpleRate(),
    LeakyBucket(),
    TokenBucket(),
    TokenBucket(3),
    SlidingWindow(),
]
algorithms = st.one_of(
    st.sampled_from([None, *ALGORITHMS]),
    st.sampled_from(["simple", SimpleRate, LeakyBucket, TokenBucket, SlidingWindow, 0]),
)
backends = st.one_of(
    st.sampled_from([None, MEMORY, SYNC_REDIS, ASYNC_REDIS]),
    st.sampled_from(["redis", object(), redis.Redis]),
)
prefixes = st.one_of(
    st.just("lt"),
    st.sampled_from(["a" * 64, "a" * 65, "a{", "a b", "", "\x00"]),
    st.text(max_size=70),
    st.none(),
    st.integers(),
)
clocks = st.one_of(
    st.sampled_from([None, time.time]), st.sampled_from([5, "now", MemoryBackend])
)


@FUZZ
@given(
    limiter_type=st.sampled_from([Limiter, AsyncLimiter]),
    arguments=limit_arguments,
    algorithm=algorithms,
    backend=backends,
    prefix=prefixes,
    clock=clocks,
)
def test_limiters_reject_bad_arguments_with_value_or_type_errors(
    limiter_type, arguments, algorithm, backend, prefix, clock
):
    max_requests, duration = arguments
    try:
        limiter = limiter_type(
            max_requests,
            duration,
            algorithm=algorithm,
            backend=backend,
            prefix=prefix,
            clock=clock,
        )
    except (ValueError, TypeError):
        return
    assert limiter.limits == parse_limits(max_requests, duration)


any_character = st.characters(exclude_categories=())
identities = st.one_of(
    st.text(any_character, min_size=1, max_size=40),
    st.sampled_from(
        ["\x00", "a\x00b", "\ud800", "\udfff", "\ud83d\ude00", "😀", "{", "}", "{}"]
    ),
    st.sampled_from(["}{", "{a}", "{{a}}", "lt:x:{y}", " ", "\n", "\u0131", "\u0130"]),
    # 10,000 characters, built from a short random piece.
    st.text(any_character, min_size=1, max_size=8).map(
        lambda piece: (piece * 10_000)[:10_000]
    ),
)
scopes = st.one_of(st.just(""), identities)
key_limits = [Limit(5, 60), Limit(100, 86_400)]
#: The algorithm of ours that runs each script.
RUNNERS = {algorithm.script.name: algorithm for algorithm in ALGORITHMS}


def door_keys(script, scope, identity, prefix="lt"):
    """The state keys that luathrottle names for ``identity`` within
    ``scope`` when it runs ``script``: a limiter's, one per limit of
    ``key_limits``, or a concurrency limiter's lease set."""
    if script.name == "concurrency":
        limiter = ConcurrencyLimiter(5, lease=60, prefix=prefix, scope=scope)
        return [limiter.state_key(identity)]
    algorithm = RUNNERS[script.name]
    limiter = Limiter(key_limits, algorithm=algorithm, prefix=prefix, scope=scope)
    return limiter.state_keys(identity)


def tag_of(identity):
    """The hash tag of ``identity``, as a limiter of another prefix, script
    and limit than the keys' under test names it."""
    limiter = Limiter(Limit(1, 1), algorithm=LeakyBucket(), prefix="other")
    return hash_tag(limiter.state_keys(identity)[0])


@FUZZ
@given(identity=identities, scope=scopes, script=st.sampled_from(all_scripts()))
def test_keys_are_bounded_ascii_and_tagged_once(identity, scope, script):
    keys = door_keys(script, scope, identity)
    # The same shape as the keys of the plainest identity and scope.
    plain = door_keys(script, "s" if scope else "", "x")
    tag = tag_of(identity)
    assert re.fullmatch(r"[A-Za-z0-9_-]{12}", tag)
    for key, plain_key in zip(keys, plain, strict=True):
        assert key.startswith(f"lt:{script.key_tag}:{{")
        assert len(key) == len(plain_key) < 100
        assert key.isascii()
        assert key.count("{") == key.count("}") == 1
        # The identity's hash alone: whatever the script, scope and limit.
        assert hash_tag(key) == tag


def speaking_limit(decisions):
    """The limit a combined decision describes, as documented: the denying
    one with the longest wait, else the one with the fewest units left and
    then the latest reset; the first of equals."""
    denied = [item for item in decisions if not item.allowed]
    if denied:
        return max(denied, key=lambda item: wait(item.retry_after))
    return min(decisions, key=lambda item: (item.remaining, -item.reset_after))


def wait(retry_after):
    return float("inf") if retry_after is None else retry_after


limit_decisions = st.builds(
    LimitDecision,
    limit=st.sampled_from(key_limits),
    allowed=st.booleans(),
    remaining=st.integers(0, 3),
    reset_after=st.sampled_from([0.0, 1.5, 60.0]),
    retry_after=st.sampled_from([None, 0.5, 60.0]),
    reason=st.none(),
)


@FUZZ
@given(decisions=st.lists(limit_decisions, min_size=1, max_size=6))
def test_the_deciding_limit_is_the_documented_one(decisions):
    assert deciding_limit(decisions) is speaking_limit(decisions)
    assert Decision.combine(decisions).limits == tuple(decisions)


@FUZZ
@given(
    identity=identities,
    prefix=st.sampled_from(["lt", "app", "a:b"]),
    algorithm=st.sampled_from(ALGORITHMS),
)
def test_limiters_key_every_identity_as_the_readme_lays_keys_out(
    identity, prefix, algorithm
):
    limiter = Limiter(key_limits, algorithm=algorithm, prefix=prefix)
    # `lt:lb4:{<identity hash>}:60s`: the prefix, the script's key tag, the
    # identity's hash tag and the limit's window.
    head = f"{prefix}:{algorithm.script.key_tag}:{{{tag_of(identity)}}}"
    expected = [f"{head}:{limit.duration}s" for limit in key_limits]
    assert limiter_keys(limiter, identity) == expected
    assert limiter_keys(limiter, identity) == expected  # and again, from the caches
    # Per-call limits and a client clock take other paths to the same keys.
    assert limiter.state_keys(identity, limits=key_limits) == expected
    clocked = Limiter(key_limits, algorithm=algorithm, prefix=prefix, clock=time.time)
    assert clocked.state_keys(identity) == expected


@FUZZ
@given(identity=identities, view=identities, scope=st.sampled_from([None, "shared"]))
def test_throttles_key_every_identity_as_a_limiter_of_their_scope_does(
    identity, view, scope
):
    class Fixed(BaseThrottleCacheKey):
        def __call__(self, request):
            return identity

    throttle = SyncThrottle(
        5,
        60,
        cache_key=Fixed(runs_before_auth=True, name="Fixed"),
        scope=scope,
        backend=MemoryBackend(),
    )
    # A throttle counts within its scope, or its view's, and its cache key
    # name, by its window: as an unnamed limit of a limiter does.
    limit = throttle.limit
    expected = Limiter(
        [Limit(limit.max_requests, limit.duration)],
        algorithm=throttle.algorithm,
        prefix="lt",
        scope=f"{scope or view}\x00Fixed",
    ).state_keys(identity)
    for _ in range(2):  # the second call builds the key from the cached frame
        key = throttle.state_key(None, view)
        assert key is not None
        assert [key] == expected


@FUZZ_LONG
@given(
    pairs=st.lists(st.tuples(identities, scopes), min_size=2, max_size=12, unique=True),
    script=st.sampled_from(all_scripts()),
)
def test_distinct_identities_and_scopes_never_share_keys(pairs, script):
    keys = [door_keys(script, scope, identity) for identity, scope in pairs]
    assert len({tuple(item) for item in keys}) == len(pairs)
    # One tag per identity, whatever the scope, and none shared.
    tags: dict[str, set[str]] = {}
    for (identity, _), item in zip(pairs, keys, strict=True):
        tags.setdefault(identity, set()).update(hash_tag(key) for key in item)
    assert all(len(found) == 1 for found in tags.values())
    assert len(set.union(*tags.values())) == len(tags)


#: A text to split between two parts of a key.
split_texts = st.text(any_character, max_size=40)


@FUZZ_LONG
@given(text=split_texts)
@example(text="abc")
@example(text="")
def test_no_split_of_a_text_between_scope_and_identity_shares_a_key(text):
    splits = [(text[:cut], text[cut:]) for cut in range(len(text) + 1)]
    keys = {
        tuple(Limiter(key_limits, scope=scope).state_keys(identity))
        for scope, identity in splits
    }
    assert len(keys) == len(splits)


@FUZZ_LONG
@given(text=split_texts)
@example(text="abc")
def test_no_split_of_a_text_between_view_and_cache_key_name_shares_a_key(text):
    class Fixed(BaseThrottleCacheKey):
        def __call__(self, request):
            return "client"

    # A cache key's name is printable and not empty; a view's is any text.
    splits = [
        (text[:cut], text[cut:]) for cut in range(len(text)) if text[cut:].isprintable()
    ]
    keys = {
        SyncThrottle(
            5,
            60,
            cache_key=Fixed(runs_before_auth=True, name=name),
            backend=MEMORY,
        ).state_key(None, view)
        for view, name in splits
    }
    assert len(keys) == len(splits)


limits_lists = st.lists(
    st.builds(
        Limit,
        st.integers(1, MAX_REQUESTS),
        st.integers(1, MAX_DURATION),
        penalty=st.one_of(st.none(), st.integers(1, MAX_DURATION)),
    ),
    min_size=1,
    max_size=4,
)


@FUZZ
@given(burst=st.one_of(scalars, st.integers(-(2**64), 2**64)))
def test_token_bucket_rejects_a_bad_burst_with_value_or_type_errors(burst):
    if burst is None or (type(burst) is int and burst >= 1):
        assert TokenBucket(burst).burst == burst
    else:
        with pytest.raises((ValueError, TypeError), match="burst"):
            TokenBucket(burst)


@FUZZ
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    mode=st.sampled_from(["hit", "peek"]),
    cost=st.integers(1, 2**64),
    now_us=st.one_of(st.none(), st.integers(0, 2**62)),
    limits=limits_lists,
)
def test_pack_args_gives_the_script_strings(algorithm, mode, cost, now_us, limits):
    args = algorithm.pack_args(mode, cost, now_us, limits)
    assert all(type(arg) is str for arg in args)
    # A cost above every limit (every bucket, for a TokenBucket whose burst
    # is larger) goes as the largest plus one: as far over.
    most = max(max(capacity(algorithm, item), item.max_requests) for item in limits)
    sent = min(cost, most + 1)
    assert args[:3] == [mode, str(sent), "" if now_us is None else str(now_us)]
    # Each limit's penalty, in microseconds, follows every limit's numbers.
    penalties = [
        0 if limit.penalty is None else limit.penalty * 1_000_000 for limit in limits
    ]
    if isinstance(algorithm, TokenBucket):
        # The burst every limit shares comes first, "" for none.
        assert args[3] == ("" if algorithm.burst is None else str(algorithm.burst))
        assert [int(arg) for arg in args[4:]] == [
            n
            for limit in limits
            for n in (
                limit.max_requests,
                -(-limit.duration * 1_000_000 // limit.max_requests),
            )
        ] + penalties
    elif isinstance(algorithm, LeakyBucket):
        # Each limit's drain: the microseconds a request takes, rounded up.
        assert [int(arg) for arg in args[3:]] == [
            n
            for limit in limits
            for n in (
                limit.max_requests,
                -(-limit.duration * 1_000_000 // limit.max_requests),
            )
        ] + penalties
    else:
        numbers = [int(arg) for arg in args[3:]]
        assert (
            numbers
            == [n for limit in limits for n in (limit.max_requests, limit.duration)]
            + penalties
        )


reply_integers = st.integers(-(2**63), 2**63 - 1)
reply_limits = st.lists(
    st.builds(Limit, st.integers(1, 10**6), st.integers(1, 10**6)),
    min_size=1,
    max_size=3,
    # Unnamed limits of one window would share a counter: a configuration
    # error Limiter refuses (tests/test_limit_changes.py), not a hit to fuzz.
    unique_by=lambda limit: limit.duration,
)


@FUZZ
@given(limits=reply_limits, reply=st.lists(reply_integers, max_size=20))
def test_replies_of_the_wrong_length_raise_value_error(limits, reply):
    if len(reply) == 5 * len(limits):
        reply = reply[:-1]
    elif len(reply) > 5 * len(limits):
        # Fields may be followed by the limits whose state was unreadable,
        # in order; a 0 never is one.
        reply = [*reply, 0]
    with pytest.raises(ValueError, match="fields"):
        Decision.from_reply(limits, reply)


def replies(statuses):
    """Replies of the right length for some limits, with their statuses."""
    return reply_limits.flatmap(
        lambda limits: st.tuples(
            st.just(limits),
            st.lists(
                st.tuples(statuses, *[reply_integers] * 4),
                min_size=len(limits),
                max_size=len(limits),
            ),
        )
    )


REASONS = {1: None, 0: Reason.LIMIT_EXCEEDED, -1: Reason.COST_EXCEEDS_LIMIT}


@FUZZ
@given(case=replies(st.sampled_from([1, 0, -1])))
def test_replies_of_known_statuses_decode(case):
    limits, fields = case
    decision = Decision.from_reply(limits, [n for item in fields for n in item])
    assert decision.allowed == all(item[0] == 1 for item in fields)
    for one, item in zip(decision.limits, fields, strict=True):
        assert one.reason == REASONS[item[0]]
        assert one.remaining >= 0
        assert (one.retry_after is None) == (item[0] != 0)


@FUZZ
@given(case=replies(reply_integers.filter(lambda status: status not in REASONS)))
def test_replies_of_unknown_statuses_raise_value_error(case):
    limits, fields = case
    with pytest.raises(ValueError, match="status"):
        Decision.from_reply(limits, [n for item in fields for n in item])


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


# One embedded store for every example (a fresh Lua runtime each would cost
# most of the test's time); each example writes under a prefix of its own.
CLOCK = ManualClock()
SHARED_MEMORY = MemoryBackend(clock=CLOCK)
PREFIXES = (f"fuzz{number}" for number in itertools.count())

operations = st.tuples(
    st.sampled_from(["hit", "hit", "peek", "reset"]),
    st.one_of(identities, st.sampled_from(["a", "b"])),
    st.one_of(st.integers(1, 5), st.integers(1, 2**64)),
    st.integers(0, 120_000_000),
)
memory_limits = st.lists(
    st.builds(Limit, st.integers(1, 50), st.integers(1, 3600)),
    min_size=1,
    max_size=3,
    # Unnamed limits of one window would share a counter: a configuration
    # error Limiter refuses (tests/test_limit_changes.py), not a hit to fuzz.
    unique_by=lambda limit: limit.duration,
)


@FUZZ
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    limits=memory_limits,
    ops=st.lists(operations, max_size=30),
)
def test_random_hits_on_the_memory_backend_never_raise(algorithm, limits, ops):
    limiter = Limiter(
        limits, algorithm=algorithm, backend=SHARED_MEMORY, prefix=next(PREFIXES)
    )
    for operation, identity, cost, step_us in ops:
        CLOCK.now += step_us / 1_000_000
        if operation == "reset":
            limiter.reset(identity)
            continue
        decision = getattr(limiter, operation)(identity, cost)
        assert len(decision.limits) == len(limits)
        assert all(
            0 <= one.remaining <= capacity(algorithm, one.limit)
            for one in decision.limits
        )
        if cost > max(capacity(algorithm, limit) for limit in limits):
            assert decision.reason == Reason.COST_EXCEEDS_LIMIT


def capacity(algorithm, limit):
    """The most one hit can cost under ``limit``."""
    if isinstance(algorithm, TokenBucket):
        return algorithm.burst_of(limit)
    return limit.max_requests
