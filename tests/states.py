"""Limiters' state as tests reach it, whatever the script's layout.

A state key names one limit's state (``lt:fw6:{tag}:scope:60s``). Most
scripts keep it at that key; a hashed script (SimpleRate's) keeps it in a
field of the identity's hash, the key up to the hash tag, and ``locate``
says where.
"""

from typing import Any

from luathrottle.backends.base import ScriptCall
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from luathrottle.scripts import all_scripts

_HASHED_TAGS = {script.key_tag for script in all_scripts() if script.hashed}


def limiter_keys(limiter: Any, identity: str) -> list[str]:
    """The state key of each of ``limiter``'s limits for ``identity``."""
    return limiter.state_keys(identity)


def hash_tag(key: str) -> str:
    """The hash tag of a state key, read from the key: what its braces hold,
    the identity's hash (a prefix holds no braces)."""
    return key.partition("{")[2].partition("}")[0]


def script_call(limiter: Any, identity: str, mode: str = "hit") -> ScriptCall:
    """The script call ``limiter`` sends for a hit of cost 1 of ``identity``,
    on the store's clock."""
    args = limiter.algorithm.pack_args(mode, 1, None, limiter.limits)
    keys = limiter.state_keys(identity)
    return (limiter.script, *limiter.script.words(keys, args))


def locate(key: str) -> tuple[str, str | None]:
    """Where the state named ``key`` lives: the key itself, with no field,
    or the hash of a hashed script and the field within it."""
    tag = key.partition(":{")[0].rpartition(":")[2]
    if tag not in _HASHED_TAGS:
        return key, None
    head, _, field = key.partition("}:")
    return head + "}", field


def _memory(where: Any) -> bool:
    return isinstance(where, MemoryBackend)


def _store(where: Any) -> Any:
    """A MemoryBackend, or the redis-py client of a Redis backend, or the
    redis-py client ``where`` is."""
    return where.client if isinstance(where, SyncRedis) else where


def _text(value: Any) -> str | None:
    if value is None or value is False:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def read_state(where: Any, key: str) -> str | None:
    """The state named ``key`` in ``where`` (a MemoryBackend, a Redis
    backend, or a redis-py client), or None."""
    where, (store_key, field) = _store(where), locate(key)
    if _memory(where):
        if field is None:
            return _text(where.command("GET", store_key))
        return _text(where.command("HMGET", store_key, field)[0])
    if field is None:
        return _text(where.get(store_key))
    return _text(where.hget(store_key, field))


def write_state(where: Any, key: str, value: str) -> None:
    """Write ``value`` as the state named ``key``, as a third party would:
    at the key, or in its field, with no expiry either way."""
    where, (store_key, field) = _store(where), locate(key)
    if _memory(where):
        if field is None:
            where.command("SET", store_key, value)
        else:
            where.command("HSET", store_key, field, value)
    elif field is None:
        where.set(store_key, value)
    else:
        where.hset(store_key, field, value)


def state_ttl(where: Any, key: str) -> int:
    """PTTL of the key that holds the state named ``key``."""
    where, (store_key, _) = _store(where), locate(key)
    if _memory(where):
        return int(where.command("PTTL", store_key))
    return int(where.pttl(store_key))


def store_keys(keys: Any) -> set[str]:
    """The keys of the store that hold the states named ``keys``."""
    return {locate(key)[0] for key in keys}


def staged_hash(value: bytes) -> tuple[dict[str, str], int | None]:
    """The fields of a hash as a staged Django cache keeps it (``expiry NUL
    field NUL value NUL ...``), and its expiry in ms since 1970 or None."""
    head, *words = value.decode().split("\0")
    assert words.pop() == "", value
    assert len(words) % 2 == 0, value
    return dict(zip(words[::2], words[1::2], strict=True)), int(head) if head else None


def staged_bytes(fields: dict[str, str], expires_ms: int | None = None) -> bytes:
    """A hash of ``fields`` as a staged Django cache keeps it."""
    words = ["" if expires_ms is None else str(expires_ms)]
    for field, text in fields.items():
        words += [field, text]
    return "\0".join([*words, ""]).encode()
