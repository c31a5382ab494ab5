"""How the calls of one stage become as few script calls as possible.

Calls whose throttles share a store, an algorithm and a clock are one script
call, since the scripts decide several keys, each with its own limit, all or
nothing. On a store whose calls take one hash slot (Redis Cluster) that is
one call per identity, and the calls of one store go out together (one
pipeline): each identity's limits stay all or nothing, but a request one
identity denies may still count against another's.

Throttles only see the backend contract: ``traits()`` for the store's
identity and slots, ``run_scripts`` for the call, ``BackendError`` for a
failure, whose ``retry_after`` the "deny" policy passes on.
"""

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from luathrottle._clock import microseconds
from luathrottle._failures import OnFailure, failure_decision
from luathrottle._keys import hash_tag
from luathrottle.backends.base import AsyncBackend, ScriptCall, SyncBackend
from luathrottle.decision import LimitDecision, decode_reply
from luathrottle.django._outcomes import ThrottleCall, ThrottleOutcome
from luathrottle.exceptions import BackendError

if TYPE_CHECKING:
    from luathrottle.django.throttles import BaseThrottle

__all__ = ["Group", "areplies", "groups", "replies"]

_STRICTEST_FIRST: tuple[OnFailure, ...] = ("raise", "deny", "allow")


class _Batch:
    """Calls that one script call decides, all or nothing."""

    __slots__ = ("calls", "throttle")

    def __init__(self, first: ThrottleCall) -> None:
        self.throttle = first.throttle
        self.calls = [first]

    def script_call(self) -> ScriptCall:
        clock = self.throttle.clock
        now_us = None if clock is None else microseconds(clock)
        limits = [call.limit for call in self.calls]
        args = self.throttle.algorithm.pack_args("hit", 1, now_us, limits)
        return self.throttle.script, [call.key for call in self.calls], args

    def outcomes(
        self, decisions: Sequence[LimitDecision], error: BackendError | None = None
    ) -> list[ThrottleOutcome]:
        return [
            ThrottleOutcome(call.throttle, item, call.key, error)
            for call, item in zip(self.calls, decisions, strict=True)
        ]

    def replied(self, reply: Sequence[int]) -> list[ThrottleOutcome]:
        limits = [call.limit for call in self.calls]
        keys = [call.key for call in self.calls]
        return self.outcomes(decode_reply(limits, reply, keys))

    def failed(self, error: BackendError, policy: OnFailure) -> list[ThrottleOutcome]:
        limits = [call.limit for call in self.calls]
        where = ", ".join(
            f"{call.throttle.cache_key.name} {call.key}" for call in self.calls
        )
        decision = failure_decision(policy, limits, error, where)
        return self.outcomes(decision.limits, error)


class Group:
    """The batches of one store: one ``run_scripts``, one round trip."""

    __slots__ = ("backend", "batches")

    def __init__(self, batch: _Batch) -> None:
        self.backend: SyncBackend | AsyncBackend = batch.throttle.backend
        self.batches = [batch]

    def script_calls(self) -> list[ScriptCall]:
        """One script call per batch."""
        return [batch.script_call() for batch in self.batches]

    def settle(
        self, replies: list[list[int]] | BackendError, default: OnFailure
    ) -> list[ThrottleOutcome]:
        """The outcomes of the store's replies, or of the failure policy.

        Throttles that share a failed store and disagree on the policy get
        the strictest of theirs.

        Raises:
            BackendError: the store failed and the policy is ``"raise"``.
        """
        if not isinstance(replies, BackendError):
            return [
                outcome
                for batch, reply in zip(self.batches, replies, strict=True)
                for outcome in batch.replied(reply)
            ]
        chosen = {
            call.throttle.on_failure or default
            for batch in self.batches
            for call in batch.calls
        }
        policy = next(item for item in _STRICTEST_FIRST if item in chosen)
        return [
            outcome
            for batch in self.batches
            for outcome in batch.failed(replies, policy)
        ]


def groups(
    kind: type["BaseThrottle[Any]"], calls: Iterable[ThrottleCall]
) -> list[Group]:
    """The calls of one stage, batched, and the batches grouped by store.

    Raises:
        TypeError: a call belongs to another kind of throttle.
    """
    batches: dict[tuple[object, ...], _Batch] = {}
    for call in calls:
        throttle = call.throttle
        if not isinstance(throttle, kind):
            raise TypeError(f"{kind.__name__} cannot run {throttle!r}")
        identity, single_slot = throttle.batching()
        key = (identity, hash_tag(call.key) if single_slot else "")
        batch = batches.get(key)
        if batch is None:
            batches[key] = _Batch(call)
        else:
            batch.calls.append(call)
    by_store: dict[object, Group] = {}
    for batch in batches.values():
        store = batch.throttle.batching()[0][0]
        group = by_store.get(store)
        if group is None:
            by_store[store] = Group(batch)
        else:
            group.batches.append(batch)
    return list(by_store.values())


def replies(group: Group) -> list[list[int]] | BackendError:
    """Run a group's calls on a sync backend; a failure is returned."""
    try:
        return cast(SyncBackend, group.backend).run_scripts(group.script_calls())
    except BackendError as error:
        return error


async def areplies(group: Group) -> list[list[int]] | BackendError:
    """Run a group's calls on an async backend; a failure is returned."""
    try:
        return await cast(AsyncBackend, group.backend).arun_scripts(
            group.script_calls()
        )
    except BackendError as error:
        return error
