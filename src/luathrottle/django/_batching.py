"""How the calls of one stage become as few script calls as possible.

Calls whose throttles share a store, an algorithm and a clock are one script
call, since the scripts decide several keys, each with its own limit, all or
nothing. On a store whose calls take one hash slot (Redis Cluster) that is
one call per identity, and the calls of one store go out together (one
pipeline): each identity's limits stay all or nothing, but a request one
identity denies may still count against another's.

A batch whose throttles all cache denials (``cache_denials=``) asks the
first one's cache before the store; the cache answers with the reply the
script would give, so the rest of the flow cannot tell the difference.

Throttles only see the backend contract: ``traits()`` for the store's
identity and slots, ``run_scripts`` for the call, ``BackendError`` for a
failure, whose ``retry_after`` the "deny" policy passes on.
"""

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from luathrottle._clock import microseconds
from luathrottle._denials import DenialCache
from luathrottle._failures import OnFailure, failure_decision
from luathrottle._keys import hash_tag, script_words
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

    __slots__ = ("calls", "epoch", "known", "sent_us", "throttle")

    def __init__(self, first: ThrottleCall) -> None:
        self.throttle = first.throttle
        self.calls = [first]
        # The denial cache's answer, or when and in which epoch the call
        # was sent, to learn the store's reply.
        self.known: list[int] | None = None
        self.sent_us = self.epoch = 0

    def _denials(self) -> DenialCache | None:
        denials = self.throttle.denials
        if denials is None or any(c.throttle.denials is None for c in self.calls):
            return None
        return denials

    def script_call(self) -> ScriptCall | None:
        """The script call to send; None when the denial cache answered."""
        clock = self.throttle.clock
        now_us = None if clock is None else microseconds(clock)
        limits = [call.limit for call in self.calls]
        keys = [call.key for call in self.calls]
        denials = self._denials()
        if denials is not None:
            self.epoch = denials.epoch
            self.sent_us = denials.now() if now_us is None else now_us
            self.known = denials.answer(tuple(keys), limits, 1, self.sent_us)
            if self.known is not None:
                return None
        args = self.throttle.algorithm.pack_args("hit", 1, now_us, limits)
        script = self.throttle.script
        return (script, *script_words(script, keys, args))

    def learn(self, reply: list[int]) -> None:
        """Teach the denial cache the store's reply, when it has one."""
        denials = self._denials()
        if denials is not None:
            keys = tuple(call.key for call in self.calls)
            limits = [call.limit for call in self.calls]
            denials.learn(keys, limits, 1, reply, self.sent_us, self.epoch)

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
        """One script call per batch that no denial cache answered."""
        calls = (batch.script_call() for batch in self.batches)
        return [call for call in calls if call is not None]

    def settle(
        self, replies: list[list[int]] | BackendError, default: OnFailure
    ) -> list[ThrottleOutcome]:
        """The outcomes of the store's replies (one per batch the denial
        caches did not answer), or of the failure policy.

        Throttles that share a failed store and disagree on the policy get
        the strictest of theirs; batches a cache answered keep its answer.

        Raises:
            BackendError: the store failed and the policy is ``"raise"``.
        """
        if not isinstance(replies, BackendError):
            sent = iter(replies)
            outcomes: list[ThrottleOutcome] = []
            for batch in self.batches:
                reply = batch.known
                if reply is None:
                    reply = next(sent)
                    batch.learn(reply)
                outcomes += batch.replied(reply)
            return outcomes
        chosen = {
            call.throttle.on_failure or default
            for batch in self.batches
            for call in batch.calls
            if batch.known is None
        }
        policy = next(item for item in _STRICTEST_FIRST if item in chosen)
        return [
            outcome
            for batch in self.batches
            for outcome in (
                batch.failed(replies, policy)
                if batch.known is None
                else batch.replied(batch.known)
            )
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
    """Run a group's calls on a sync backend; a failure is returned. Calls
    the denial caches answered all never reach the store."""
    calls = group.script_calls()
    if not calls:
        return []
    try:
        return cast(SyncBackend, group.backend).run_scripts(calls)
    except BackendError as error:
        return error


async def areplies(group: Group) -> list[list[int]] | BackendError:
    """Run a group's calls on an async backend; a failure is returned."""
    calls = group.script_calls()
    if not calls:
        return []
    try:
        return await cast(AsyncBackend, group.backend).arun_scripts(calls)
    except BackendError as error:
        return error
