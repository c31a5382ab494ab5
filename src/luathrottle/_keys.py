"""State keys: namespaced, hashed, and one hash tag per identity.

A key looks like ``lt:fw6:{Q2xhcHJvZmls}:b3RoZXJzY29w:60s``:

- the prefix, then the script's key tag (the initials of its name, and the
  version of its state layout), so a new layout never reads keys an older
  one wrote, and a new version of the same layout reads them all;
- the identity, hashed, as the hash tag: keys are bounded in length, carry
  no personal data, and no client-chosen value can pick or break the tag;
- the scope (a view and throttle name, say), hashed, when there is one, so
  that scopes never share a counter;
- the limit's counter: its name when it was given one (``name=``), else
  its window (``60s``). The numbers of a limit are not in its key, so a
  limit lowered from ``100/hour`` to ``10/hour`` keeps counting where it
  was, and the script judges that count against the limit it is given now;
  a new window is a new counter, unless the limit is named.

All keys of one identity share the hash tag, whatever their scope, so one
script call on one Redis Cluster slot decides all of its limits.

Such a key names one limit's state. A script whose header says ``-- layout:
hash`` (SimpleRate's) keeps every limit of an identity in one hash instead:
the key up to the hash tag names the hash, and the rest (scope and limit)
the field, ``b3RoZXJzY29w:60s`` in ``lt:fw6:{Q2xhcHJvZmls}``.
``Script.words`` makes a call's KEYS and ARGV so; everything else, such as
the denial cache and the messages that name a state, keeps the whole key.
"""

import base64
import functools
import hashlib
from collections.abc import Iterable, Sequence

from luathrottle.rates import Limit
from luathrottle.scripts import Script

__all__ = [
    "KEY_PREFIX",
    "check_apart",
    "check_prefix",
    "check_scope",
    "hash_identity",
    "hash_tag",
    "identity_digest",
    "key_frame",
    "limit_counter",
    "state_keys",
    "window_counter",
]

#: The start of every state key, unless a limiter is given another prefix.
KEY_PREFIX = "lt"

# 9 bytes (72 bits) name an identity: finding another identity with the same
# digest as a given one takes about 2**72 tries. Scopes are chosen by the
# developer, not by clients, and 8 bytes keep them apart.
_IDENTITY_BYTES = 9
_SCOPE_BYTES = 8
#: Identities hashed recently are remembered, short ones only, so a stream
#: of long hostile identities cannot grow the cache's memory.
_CACHED_LENGTH = 256


def hash_identity(*parts: str, size: int = _IDENTITY_BYTES) -> str:
    """A short, URL-safe digest of ``parts`` that keeps them apart.

    Lone surrogates and NUL bytes are hashed like any other character.

    Args:
        parts: the strings to hash, kept apart from each other.
        size: the digest's length in bytes, before base64.
    """
    if sum(len(part) for part in parts) <= _CACHED_LENGTH:
        return _cached_digest(parts, size)
    return _digest(parts, size)


def _digest(parts: tuple[str, ...], size: int) -> str:
    digest = hashlib.blake2b(digest_size=size)
    for part in parts:
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


_cached_digest = functools.lru_cache(maxsize=4096)(_digest)


def identity_digest(identity: str) -> str:
    """``hash_identity(identity)``, the hash tag of every key of ``identity``.

    Every request hashes one, so short ones are remembered by a cache keyed
    on the string alone, the cheapest key an ``lru_cache`` can have.
    """
    if len(identity) <= _CACHED_LENGTH:
        return _cached_identity_digest(identity)
    return _digest((identity,), _IDENTITY_BYTES)


@functools.lru_cache(maxsize=4096)
def _cached_identity_digest(identity: str) -> str:
    return _digest((identity,), _IDENTITY_BYTES)


def window_counter(limit: Limit) -> str:
    """The counter of ``limit`` named by its window alone, ``60s``: limits
    of one window share it, whatever their ``max_requests``."""
    return f"{limit.duration}s"


def limit_counter(limit: Limit) -> str:
    """The counter of ``limit`` in its state key: its name, when it was
    given one, else its window (``window_counter``).

    A name is hashed, so that no character of it reaches a store's key and
    no name reads as a window. A limit named as ``Limit`` names it by
    default (``"5/60s"``) counts as unnamed: the two cannot be told apart.
    """
    if limit.name == f"{limit.max_requests}/{limit.duration}s":
        return window_counter(limit)
    return "n" + hash_identity(limit.name, size=_SCOPE_BYTES)


def check_apart(limits: Iterable[Limit], argument: str) -> None:
    """Refuse two limits that would count on one counter: unnamed limits of
    one window, or limits of one name.

    Raises:
        ValueError: naming ``argument``, both limits and the fix.
    """
    seen: dict[str, Limit] = {}
    for limit in limits:
        other = seen.setdefault(limit_counter(limit), limit)
        if other is not limit:
            raise ValueError(
                f"{argument} holds limits {other.name!r} and {limit.name!r}, "
                "which would count on one counter: a limit is counted by its "
                "name, else by its window; give them name=... to count apart"
            )


def key_frame(
    prefix: str, script: Script, scope: str, counter: Limit | str
) -> tuple[str, str]:
    """What surrounds the identity in the state key of ``counter`` within
    ``scope``: ``head + identity_digest(identity) + tail`` is that key.

    Every key is built here: a limit's counter is ``limit_counter(limit)``, a
    concurrency limit's its slots and lease (``3/30000ms``), and a caller
    may give its own (a Django throttle, ``window_counter``).
    A limiter or a throttle builds its frames once and then only pays for
    the identity's digest on each call.
    """
    scope_part = f":{hash_identity(scope, size=_SCOPE_BYTES)}" if scope else ""
    if isinstance(counter, Limit):
        counter = limit_counter(counter)
    return f"{prefix}:{script.key_tag}:{{", f"}}{scope_part}:{counter}"


def state_keys(
    prefix: str, script: Script, scope: str, identity: str, limits: Sequence[Limit]
) -> list[str]:
    """The state key of every limit of ``identity`` within ``scope``."""
    digest = identity_digest(identity)
    frames = (key_frame(prefix, script, scope, limit) for limit in limits)
    return [head + digest + tail for head, tail in frames]


def hash_tag(key: str) -> str:
    """The hash tag of a key ``state_keys`` built: keys with equal tags share
    a Redis Cluster slot, so one script call can take them together."""
    return key.partition("{")[2].partition("}")[0]


def check_prefix(prefix: object) -> str:
    """Validate a key prefix: a short, non-empty string without braces.

    Raises:
        TypeError, ValueError: naming ``prefix``.
    """
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__} {prefix!r}")
    if not prefix or len(prefix) > 64 or any(c in prefix for c in "{} \t\r\n"):
        raise ValueError(
            "prefix must be 1 to 64 characters without braces or white space, "
            f"got {prefix!r}"
        )
    return prefix


def check_scope(scope: object) -> str:
    """Validate a limiter's scope: any str, ``""`` for none.

    Raises:
        TypeError: naming ``scope``.
    """
    if not isinstance(scope, str):
        raise TypeError(
            f'scope must be a str ("" for none), got {type(scope).__name__} {scope!r}'
        )
    return scope
