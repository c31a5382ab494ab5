"""The default embedded backend is one per process, as docs/guide/limiter.md
says next to its first example: limiters that name no backend share
counters for one key and limit (its name, else its window), whatever their
objects or numbers; ``prefix=`` or a backend of their own separates them."""

import uuid

from luathrottle import Limit, Limiter
from luathrottle.backends.memory import MemoryBackend


def fresh_key() -> str:
    # The process-wide store outlives each test: no key is ever reused.
    return f"user:{uuid.uuid4()}"


def test_two_limiters_without_a_backend_share_counters():
    key = fresh_key()
    first, second = Limiter(2, 60), Limiter(2, 60)
    assert first.backend is second.backend
    assert first.hit(key).remaining == 1
    assert second.hit(key).remaining == 0
    assert not first.hit(key).allowed
    assert not second.peek(key).allowed


def test_limits_of_one_window_share_whatever_their_numbers():
    key = fresh_key()
    small, large = Limiter((5, 60)), Limiter((10, 60))
    assert large.hit(key, cost=4).remaining == 6
    assert small.hit(key).remaining == 0
    assert not small.hit(key).allowed


def test_a_named_limit_counts_apart_from_the_unnamed_one():
    key = fresh_key()
    named, unnamed = Limiter(Limit(5, 60, name="burst")), Limiter((5, 60))
    assert named.hit(key, cost=4).remaining == 1
    assert unnamed.hit(key).remaining == 4
    assert named.hit(key).remaining == 0


def test_a_prefix_or_a_backend_of_their_own_separates_them():
    key = fresh_key()
    shared = Limiter(2, 60)
    assert shared.hit(key, cost=2).remaining == 0
    assert Limiter(2, 60, prefix="reports").hit(key).remaining == 1
    assert Limiter(2, 60, backend=MemoryBackend()).hit(key).remaining == 1
    assert not Limiter(2, 60).hit(key).allowed
