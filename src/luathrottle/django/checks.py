"""System checks of ``settings.LUATHROTTLE``, run by ``manage.py check``.

Views check their own throttles when they are built; these checks cover
what the settings declare for every view. Each message is reported once,
whatever the number of entries it applies to.
"""

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from luathrottle.django._conf import get_config, problems
from luathrottle.django.throttles import BaseThrottle

__all__ = ["E001", "E002", "E003", "E004", "E005", "W001", "check_settings"]

E001 = Error(
    "LUATHROTTLE is malformed.",
    hint=(
        "LUATHROTTLE is a dict with the keys 'throttling' (a list), "
        "'allow_unsafe_cache' (True, False or None) and 'on_failure' "
        "('allow', 'deny' or 'raise')."
    ),
    id="luathrottle.E001",
)
E002 = Error(
    "An entry of LUATHROTTLE['throttling'] is not a throttle.",
    hint="Entries are throttles or (SyncThrottle, AsyncThrottle) pairs.",
    id="luathrottle.E002",
)
E003 = Error(
    "A pair in LUATHROTTLE['throttling'] is not one SyncThrottle and one "
    "AsyncThrottle.",
    hint="Sync views take the SyncThrottle of a pair, async views the other.",
    id="luathrottle.E003",
)
E004 = Error(
    "A throttle in LUATHROTTLE['throttling'] uses a cache that is not in CACHES.",
    hint="Give its SyncDjangoCache or AsyncDjangoCache an alias of CACHES.",
    id="luathrottle.E004",
)
E005 = Error(
    "A throttle in LUATHROTTLE['throttling'] stores its state in a cache that "
    "cannot keep limits exact, and LUATHROTTLE['allow_unsafe_cache'] is False.",
    hint="Use a Redis-backed cache, or SyncRedis and AsyncRedis backends.",
    id="luathrottle.E005",
)
W001 = Warning(
    "A throttle in LUATHROTTLE['throttling'] stores its state in a cache that "
    "cannot keep limits exact.",
    hint=(
        "Use a Redis-backed cache, or SyncRedis and AsyncRedis backends; set "
        "LUATHROTTLE['allow_unsafe_cache'] to None to accept the risk."
    ),
    id="luathrottle.W001",
)

_BY_CODE = {"E001": E001, "E002": E002, "E003": E003}


def _unique(messages: Iterable[CheckMessage]) -> list[CheckMessage]:
    found: list[CheckMessage] = []
    for message in messages:
        if message not in found:
            found.append(message)
    return found


def _throttles() -> list[BaseThrottle[Any]]:
    found: list[BaseThrottle[Any]] = []
    for entry in get_config().throttling:
        found.extend(entry if isinstance(entry, tuple) else (entry,))
    return found


def _cache_message(
    throttle: BaseThrottle[Any], policy: bool | None
) -> CheckMessage | None:
    try:
        throttle.check_backend()
    except ValueError:
        return E004
    if policy is None or throttle.unsafe_reason() is None:
        return None
    return W001 if policy else E005


def check_settings(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    """Check ``settings.LUATHROTTLE``.

    Returns:
        ``E001``-``E003`` when the settings are malformed; otherwise
        ``E004`` for unknown cache aliases and ``W001`` (or ``E005`` when
        ``allow_unsafe_cache`` is False) for unsafe caches.
    """
    found = problems(getattr(settings, "LUATHROTTLE", {}))
    if found:
        return _unique(_BY_CODE[problem.code] for problem in found)
    policy = get_config().allow_unsafe_cache
    messages = (_cache_message(throttle, policy) for throttle in _throttles())
    return _unique(message for message in messages if message is not None)
