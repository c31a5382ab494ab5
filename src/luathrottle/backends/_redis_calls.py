"""Redis script calls without I/O: the command a call goes out as (FCALL,
FCALL_RO, EVALSHA or EVAL), what a pipeline's replies say about the calls
to run again, what a failed FUNCTION LOAD means, and Redis errors, of
redis-py or valkey-py alike, as luathrottle's. The backends in
``luathrottle.backends.redis`` are these around one network call each."""

from collections.abc import Sequence
from typing import Any, Literal

from luathrottle.backends._clients import (
    NO_PERMISSION,
    NO_SCRIPT,
    OUT_OF_MEMORY,
    RESPONSE_ERRORS,
    SERVER_ERRORS,
    pool_full,
)
from luathrottle.backends.base import ScriptCall
from luathrottle.exceptions import BackendError, PoolExhaustedError, ScriptError
from luathrottle.scripts import Script

__all__ = [
    "LoadFailure",
    "Trouble",
    "Via",
    "command",
    "function_trouble",
    "load_failure",
    "merge",
    "missing_scripts",
    "own_error",
    "reruns",
    "translated",
]

# Error replies that speak of the server, not of one call's keys, beyond
# those the client libraries give classes of their own (SERVER_ERRORS):
# these stay ResponseErrors with the code in front of the message.
_SERVER_ERROR_CODES = frozenset(
    {"BUSY", "CLUSTERDOWN", "LOADING", "MASTERDOWN", "MISCONF", "NOREPLICAS"}
)


def translated(what: str, error: Exception) -> BackendError:
    """``error`` as ours: a ``ScriptError`` when the server answered about
    this call alone, a ``PoolExhaustedError`` when the client had no free
    connection, else a ``BackendError`` that a breaker counts."""
    message = f"{what}: {error}"
    if pool_full(error):
        return PoolExhaustedError(message)
    if (
        isinstance(error, RESPONSE_ERRORS)
        and not isinstance(error, SERVER_ERRORS)
        and str(error).split(" ", 1)[0] not in _SERVER_ERROR_CODES
    ):
        return ScriptError(message)
    return BackendError(message)


# How a call goes out: as a function, by SHA1, or as its source.
Via = Literal["function", "sha", "source"]


def command(
    script: Script, keys: Sequence[str], args: Sequence[str], via: Via
) -> tuple[str, ...]:
    if via == "function":
        # A peek never writes, so it goes through the no-writes twin, which
        # a client that routes reads to replicas may send there.
        if args[0] == "peek":
            return ("FCALL_RO", script.function_ro, str(len(keys)), *keys, *args)
        return ("FCALL", script.function, str(len(keys)), *keys, *args)
    if via == "sha":
        return ("EVALSHA", script.sha, str(len(keys)), *keys, *args)
    return ("EVAL", script.source, str(len(keys)), *keys, *args)


# What a failed FCALL says about functions on this server.
Trouble = Literal["missing", "unusable"]


def function_trouble(error: Exception) -> Trouble | None:
    """``"missing"`` when the library or function is not loaded,
    ``"unusable"`` when the server has no functions or the ACL forbids
    them, None when the error is about something else."""
    if not isinstance(error, RESPONSE_ERRORS):
        return None
    text = str(error)
    if text.startswith("Function not found"):
        return "missing"
    if text.startswith("unknown command") or (
        isinstance(error, NO_PERMISSION) and "'fcall" in text
    ):
        return "unusable"
    return None


def reruns(
    calls: Sequence[ScriptCall], replies: list[Any]
) -> tuple[list[int], set[Trouble]]:
    """Indexes of the pipelined calls that ran nothing because the server
    lacked their script or function, and what the functions' trouble was.
    Any other error reply is ``own_error``'s: in place, or raised."""
    missing: list[int] = []
    troubles: set[Trouble] = set()
    for index, reply in enumerate(replies):
        if isinstance(reply, NO_SCRIPT):
            missing.append(index)
        elif isinstance(reply, Exception):
            trouble = function_trouble(reply)
            if trouble is None:
                replies[index] = own_error(calls[index], reply)
            else:
                missing.append(index)
                troubles.add(trouble)
    return missing, troubles


def own_error(call: ScriptCall, reply: Exception) -> ScriptError:
    """The error reply of a pipelined ``call`` as that call's own
    ``ScriptError``, to be left in place for its caller alone.

    Raises:
        BackendError: the reply speaks of the server, not of this call: the
            whole pipeline fails.
    """
    error = translated(call[0].name, reply)
    if not isinstance(error, ScriptError):
        raise error from reply
    error.__cause__ = reply
    return error


def merge(
    calls: Sequence[ScriptCall],
    replies: list[Any],
    missing: Sequence[int],
    rerun: Sequence[Any],
) -> list[Any]:
    """The first pipeline's replies, with the reruns in place of those that
    ran nothing; each call's own error stays in place (``own_error``)."""
    for index, reply in zip(missing, rerun, strict=True):
        if isinstance(reply, Exception):
            reply = own_error(calls[index], reply)
        replies[index] = reply
    return replies


def missing_scripts(
    calls: Sequence[ScriptCall], missing: Sequence[int]
) -> list[Script]:
    """The scripts of the calls at ``missing``, each once: the libraries a
    pipeline that found functions missing loads."""
    return list(dict.fromkeys(calls[index][0] for index in missing))


# What a failed FUNCTION LOAD says: the library is there already, this server
# or user cannot have functions, or the server is out of memory.
LoadFailure = Literal["present", "unusable", "full"]


def load_failure(error: Exception) -> LoadFailure | None:
    """What a failed FUNCTION LOAD of a library means, None when the server
    failed otherwise. A library is named by its content, so one of its name
    already loaded is this very code: ``"present"`` is a success."""
    if isinstance(error, OUT_OF_MEMORY):
        return "full"
    if isinstance(error, NO_PERMISSION):
        return "unusable"
    if not isinstance(error, RESPONSE_ERRORS):
        return None
    text = str(error)
    if text.startswith("unknown command"):
        return "unusable"
    if text.startswith("Library ") and text.endswith(" already exists"):
        return "present"
    return None
