"""System checks, run by ``manage.py check``: ``settings.LUATHROTTLE``, the
URLconf's view classes, and the Redis-backed caches of ``CACHES``.

Views check their own throttles when they are built; ``check_settings``
covers what the settings declare for every view, one message per entry at
fault, naming it. ``check_views`` finds throttling attributes on view
classes that are no ``ThrottledView``, where nothing would read them.
``check_caches`` finds Redis Cluster caches whose key function moves the
hash tag of luathrottle's keys.

The constants below are the kinds of message: each reported message has
the id and hint of one of them, and a text that names the culprit.
"""

from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.checks import CheckMessage, Error, Warning
from django.urls import URLPattern, URLResolver, get_resolver

from luathrottle.backends._django_redis import scatters_hash_tags
from luathrottle.django._conf import Problem, get_config, problems
from luathrottle.django.throttles import BaseThrottle
from luathrottle.django.views import ThrottledView
from luathrottle.rates import parse_drf_rate

__all__ = [
    "E001",
    "E002",
    "E003",
    "E004",
    "E005",
    "E006",
    "VIEW_ATTRIBUTES",
    "W001",
    "W002",
    "check_caches",
    "check_settings",
    "check_views",
]

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

W002 = Warning(
    "A cache in CACHES writes to a Redis Cluster, and its KEY_PREFIX or "
    "KEY_FUNCTION moves the {...} hash tag of luathrottle's keys.",
    hint=(
        "Keep braces out of KEY_PREFIX and let KEY_FUNCTION keep the key's own "
        "braces: otherwise every throttle key of the cache hashes to one slot, "
        "or one decision's keys to several, which the cluster refuses."
    ),
    id="luathrottle.W002",
)

E006 = Error(
    "A view class sets throttling attributes but is not a ThrottledView, so "
    "its throttles never run.",
    hint="Derive the view class from luathrottle.django.ThrottledView.",
    id="luathrottle.E006",
)

#: The class attributes only ``ThrottledView`` reads.
VIEW_ATTRIBUTES = (
    "throttling",
    "throttling_allow_unsafe_cache",
    "throttling_headers_on_every_response",
)

_BY_CODE = {"E001": E001, "E002": E002, "E003": E003}


def _naming(kind: CheckMessage, detail: str, obj: object = None) -> CheckMessage:
    """A message of ``kind`` whose text is ``detail``, naming the culprit."""
    return CheckMessage(
        kind.level,
        detail if detail.endswith(".") else detail + ".",
        hint=kind.hint,
        obj=obj,
        id=kind.id,
    )


def _unique(messages: Iterable[CheckMessage]) -> list[CheckMessage]:
    found: list[CheckMessage] = []
    for message in messages:
        if message not in found:
            found.append(message)
    return found


def _throttles() -> Iterator[tuple[str, BaseThrottle[Any]]]:
    # Twins of a pair share their entry's name, so that a problem both have
    # is reported once.
    for index, entry in enumerate(get_config().throttling):
        for item in entry if isinstance(entry, tuple) else (entry,):
            yield f"LUATHROTTLE['throttling'][{index}]", item


def _cache_message(
    where: str, throttle: BaseThrottle[Any], policy: bool | None
) -> CheckMessage | None:
    try:
        throttle.check_backend()
    except ValueError as exc:
        return _naming(E004, f"{where}: {exc}")
    if policy is None:
        return None
    reason = throttle.unsafe_reason()
    if reason is None:
        return None
    return _naming(
        W001 if policy else E005,
        f"{where} stores its state in a cache that cannot keep limits exact: {reason}",
    )


def check_settings(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    """Check ``settings.LUATHROTTLE``.

    Returns:
        ``E001``-``E003`` when the settings are malformed; otherwise
        ``E004`` for unknown cache aliases and ``W001`` (or ``E005`` when
        ``allow_unsafe_cache`` is False) for unsafe caches. Each message
        names the entry at fault.
    """
    found = problems(getattr(settings, "LUATHROTTLE", {}))
    found += _drf_rate_problems(getattr(settings, "REST_FRAMEWORK", {}))
    if found:
        return _unique(
            _naming(_BY_CODE[problem.code], problem.detail) for problem in found
        )
    policy = get_config().allow_unsafe_cache
    messages = (_cache_message(where, item, policy) for where, item in _throttles())
    return _unique(message for message in messages if message is not None)


def _drf_rate_problems(rest_framework: object) -> list[Problem]:
    """The rates of ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` that no
    throttle of ``luathrottle.drf`` (nor DRF) reads: refused at start-up,
    not at the first request."""
    rates = (
        rest_framework.get("DEFAULT_THROTTLE_RATES")
        if isinstance(rest_framework, dict)
        else None
    )
    if not isinstance(rates, dict):
        return []
    found = []
    for scope, rate in rates.items():
        if rate is None:
            continue
        try:
            parse_drf_rate(rate)
        except ValueError as exc:
            where = f"REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'][{scope!r}]"
            found.append(Problem("E001", f"{where}: {exc}"))
    return found


def _view_classes(patterns: Iterable[object]) -> Iterator[type]:
    """The class of each class-based view the patterns route to, includes
    followed."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _view_classes(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            view: Any = pattern.callback
            # Decorators made with functools.wraps keep view_class; others
            # may still expose the view they wrap.
            while view is not None and not hasattr(view, "view_class"):
                view = getattr(view, "__wrapped__", None)
            if view is not None and isinstance(view.view_class, type):
                yield view.view_class


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def check_views(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    """Check the view classes the root URLconf routes to.

    Returns:
        ``E006`` for each view class that sets one of ``VIEW_ATTRIBUTES``
        without deriving from ``ThrottledView``, naming the class and the
        attributes: such throttles would never run, silently.
    """
    messages: list[CheckMessage] = []
    seen: set[type] = set()
    for cls in _view_classes(get_resolver().url_patterns):
        if cls in seen or issubclass(cls, ThrottledView):
            continue
        seen.add(cls)
        found = [name for name in VIEW_ATTRIBUTES if hasattr(cls, name)]
        if found:
            names = ", ".join(found)
            messages.append(
                _naming(
                    E006,
                    f"{_dotted(cls)} sets {names} but does not derive from "
                    "ThrottledView, so its throttles never run",
                    obj=_dotted(cls),
                )
            )
    return messages


def check_caches(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    """Check the Redis-backed caches of ``CACHES``.

    Returns:
        ``W002`` for each cache that writes to a Redis Cluster through a
        ``KEY_PREFIX`` or ``KEY_FUNCTION`` that moves the hash tag of
        luathrottle's keys. On one server, which Django's own Redis cache
        talks to, braces in a prefix are harmless and reported by nothing.
    """
    return [
        _naming(
            W002,
            f"cache {alias!r} writes to a Redis Cluster, and its KEY_PREFIX or "
            "KEY_FUNCTION moves the {...} hash tag of luathrottle's keys",
        )
        for alias in settings.CACHES
        if scatters_hash_tags(caches[alias])
    ]
