"""A key of another type where a state key belongs (a hash, a list, a sorted
set) holds no state of ours, and LeakyBucket, while it keeps a key per
limit, reads it as the other algorithms read anything but their hash: as
absent state. A peek
writes nothing, a hit that every limit admits overwrites it with a state
that expires, a hit that another limit denies leaves it as it is, and a
reset deletes it; the ``luathrottle`` logger names the hashed key at every
call that met it. So no identity stays denied (under ``on_failure="deny"``)
until someone deletes the key. On the real Redis, fakeredis and the
embedded backend alike. (SlidingWindow keeps an identity's limits in one
hash: test_sliding_window_hash.py holds it to the same rule there.)"""

import logging
import re

import pytest

from luathrottle import LeakyBucket, Limit, Limiter, TokenBucket
from states import limiter_keys
from test_hostile_state import LIMIT, Store, warnings_about

ALGORITHMS = {"leaky": LeakyBucket, "token": TokenBucket}
#: Each foreign type, made by a command the embedded keyspace knows too.
KINDS = {
    "hash": ("HSET", "field", "1"),
    "list": ("RPUSH", "1"),
    "zset": ("ZADD", "1", "member"),
}
OTHER = Limit(9, 30)


@pytest.fixture(params=["memory", "fakeredis", "redis"])
def store(request) -> Store:
    return Store(request.param, request)


#: The algorithms that keep a key per limit; a hashed script's foreign key
#: is its identity's hash (test_hash_layout.py, test_token_bucket_hash.py).
KEYED = sorted(name for name, make in ALGORITHMS.items() if not make().script.hashed)


@pytest.fixture(params=KEYED)
def algorithm(request) -> str:
    return str(request.param)


@pytest.fixture(params=sorted(KINDS))
def kind(request) -> str:
    return str(request.param)


def make_foreign(store: Store, key: str, kind: str) -> None:
    """Delete ``key`` and make it a ``kind`` that holds no state of ours."""
    command, *args = KINDS[kind]
    store.backend.delete_keys([key])
    if store.kind == "memory":
        store.backend.command(command, key, *args)
    else:
        store.backend.client.execute_command(command, key, *args)
    assert store.type_of(key) == kind


def two_limits(store: Store, algorithm: str) -> tuple[Limiter, str, str]:
    """A limiter of LIMIT and OTHER, with the state key of each."""
    limiter = Limiter(
        [LIMIT, OTHER], algorithm=ALGORITHMS[algorithm](), backend=store.backend
    )
    first, second = limiter_keys(limiter, "client")
    return limiter, first, second


def test_a_hit_overwrites_it_with_a_state_that_expires(store, algorithm, kind, caplog):
    limiter, ours, foreign = two_limits(store, algorithm)
    assert limiter.hit("client").allowed
    make_foreign(store, foreign, kind)
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        decision = limiter.hit("client")
        assert len(warnings_about(caplog, foreign)) == 1
        assert [item.remaining for item in decision.limits] == [3, 8]
        assert decision.allowed
        assert store.type_of(foreign) == "string"
        assert re.fullmatch(r"[0-9]+(:[0-9]+){2,3}", store.get(foreign) or "")
        # A sliding window's state lives two durations.
        assert 0 < store.pttl(foreign) <= 2 * OTHER.duration * 1000
        second = limiter.hit("client")
    assert [item.remaining for item in second.limits] == [2, 7]
    assert len(warnings_about(caplog, foreign)) == 1
    assert not warnings_about(caplog, ours)


def test_a_peek_reads_it_as_absent_and_writes_nothing(store, algorithm, kind, caplog):
    limiter, _, foreign = two_limits(store, algorithm)
    make_foreign(store, foreign, kind)
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        decision = limiter.peek("client")
    assert decision.allowed
    assert [item.remaining for item in decision.limits] == [5, 9]
    assert store.type_of(foreign) == kind
    assert len(warnings_about(caplog, foreign)) == 1


def test_a_hit_another_limit_denies_leaves_it_as_it_is(store, algorithm, kind, caplog):
    strict = Limit(1, 60, name="strict")
    limiter = Limiter(
        [LIMIT, strict], algorithm=ALGORITHMS[algorithm](), backend=store.backend
    )
    assert limiter.hit("client").allowed
    foreign, _ = limiter_keys(limiter, "client")
    make_foreign(store, foreign, kind)
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        decision = limiter.hit("client")
    assert not decision.allowed
    assert decision.limit == strict.max_requests
    assert [item.allowed for item in decision.limits] == [True, False]
    assert store.type_of(foreign) == kind
    assert len(warnings_about(caplog, foreign)) == 1


def test_a_reset_deletes_it(store, algorithm, kind, caplog):
    limiter, ours, foreign = two_limits(store, algorithm)
    assert limiter.hit("client").allowed
    make_foreign(store, foreign, kind)
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        before = limiter.peek("client")
        limiter.reset("client")
        assert store.type_of(foreign) == store.type_of(ours) == "none"
        after = limiter.hit("client")
    assert [item.remaining for item in before.limits] == [4, 9]
    assert [item.remaining for item in after.limits] == [4, 8]
    # Only the peek before the reset met the foreign key.
    assert len(warnings_about(caplog, foreign)) == 1
    assert not warnings_about(caplog, ours)
