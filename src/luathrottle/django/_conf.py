"""``settings.LUATHROTTLE``: the settings-level throttles, the policy on
unsafe caches, and the failure policy.

::

    LUATHROTTLE = {
        "throttling": [
            (SyncThrottle(100, Rate.minute), AsyncThrottle(100, Rate.minute)),
            SyncThrottle(1000, Rate.day, cache_key=UserPk()),
        ],
        "allow_unsafe_cache": True,
        "on_failure": "allow",
        "enabled": True,
        "shadow": False,
        "near_limit": 0.2,
        "observers": ["luathrottle.prometheus.PrometheusObserver"],
        "exempt": ["10.0.0.0/8", "2001:db8:ffff::/48"],
    }

An entry of ``throttling`` is a throttle, or a pair of twins of which each
view takes the one of its kind. ``allow_unsafe_cache`` is True (warn, the
default), False (raise) or None (do not check). ``on_failure`` is what
throttles that set no policy do when their store fails: ``"allow"`` the
request (the default: a dead store must not take the site down; every
failure is logged and signalled), ``"deny"`` it with a 503, or ``"raise"``.
``enabled`` False switches limiting off in the process (``luathrottle._switch``).
``shadow`` True puts every throttle (Django's, DRF's and dmr's) in shadow
mode; ``near_limit`` is the fraction under which throttles that set none
report ``Outcome.NEAR_LIMIT``. ``observers`` are added for every limiter in
the process: each a callable, or a dotted path to one, and a class is
made once, with no arguments. ``exempt`` lists IP addresses or CIDR
networks whose clients (``REMOTE_ADDR``, normalised as ``RemoteAddr``
normalises it) skip every luathrottle throttle, Django's, DRF's and dmr's,
with no store call.

The settings are read when the app is ready, when first needed, and again
after they change.
"""

from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from luathrottle._addresses import Clients, check_networks
from luathrottle._events import (
    Observer,
    add_observer,
    check_near_limit,
    remove_observer,
)
from luathrottle._failures import OnFailure, check_on_failure
from luathrottle._switch import SWITCH
from luathrottle.django._unsafe import is_setting
from luathrottle.django.throttles import AsyncThrottle, BaseThrottle, SyncThrottle

__all__ = ["Config", "Problem", "apply_settings", "get_config", "problems"]

Entry = SyncThrottle | AsyncThrottle | tuple[BaseThrottle[Any], BaseThrottle[Any]]

_KEYS = frozenset(
    {
        "throttling",
        "allow_unsafe_cache",
        "on_failure",
        "enabled",
        "shadow",
        "near_limit",
        "observers",
        "exempt",
    }
)


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with the settings.

    Attributes:
        code: the system check's id, without the ``luathrottle.`` prefix.
        detail: what is wrong, naming the culprit.
    """

    code: str
    detail: str


@dataclass(frozen=True, slots=True, eq=False)
class Config:
    """The settings, validated.

    Attributes:
        throttling: the entries of ``LUATHROTTLE["throttling"]``.
        allow_unsafe_cache: the settings-level policy on unsafe caches.
        on_failure: the failure policy of throttles that set none.
        enabled: whether limiting is on.
        shadow: every throttle is in shadow mode.
        near_limit: the near-limit fraction of throttles that set none.
        observers: the process's observers from the settings.
        clients: the clients ``LUATHROTTLE["exempt"]`` exempts.
    """

    throttling: tuple[Entry, ...]
    allow_unsafe_cache: bool | None
    on_failure: OnFailure
    enabled: bool
    shadow: bool
    near_limit: float | None
    observers: tuple[Observer, ...]
    clients: Clients

    def exempts(self, request: Any) -> bool:
        """Whether the client of ``request``, a Django (or DRF) request, is
        exempt from every throttle: its ``REMOTE_ADDR`` is in ``exempt``."""
        if not self.clients.exempt:
            return False
        value = request.META.get("REMOTE_ADDR")
        return isinstance(value, str) and self.clients.exempts_host(value)

    def throttles_for(
        self, *, is_async: bool, view: str
    ) -> tuple[BaseThrottle[Any], ...]:
        """The settings-level throttles that guard ``view``.

        Raises:
            ImproperlyConfigured: an entry has no throttle of the view's kind.
        """
        kind = AsyncThrottle if is_async else SyncThrottle
        chosen: list[BaseThrottle[Any]] = []
        for index, entry in enumerate(self.throttling):
            twins = entry if isinstance(entry, tuple) else (entry,)
            fitting = [item for item in twins if isinstance(item, kind)]
            if not fitting:
                raise ImproperlyConfigured(
                    f"LUATHROTTLE['throttling'][{index}] is {entry!r}, which "
                    f"cannot guard the {'async' if is_async else 'sync'} view "
                    f"{view}; give a (SyncThrottle, AsyncThrottle) pair"
                )
            chosen.append(fitting[0])
        return tuple(chosen)


def _raw() -> object:
    return getattr(settings, "LUATHROTTLE", {})


def _entry_problem(index: int, entry: object) -> Problem | None:
    where = f"LUATHROTTLE['throttling'][{index}]"
    if isinstance(entry, SyncThrottle | AsyncThrottle):
        return None
    if not isinstance(entry, tuple):
        return Problem(
            "E002",
            f"{where} is {entry!r}; entries must be throttles or "
            "(SyncThrottle, AsyncThrottle) pairs",
        )
    kinds = sorted(type(item).__name__ for item in entry)
    if kinds != ["AsyncThrottle", "SyncThrottle"]:
        return Problem(
            "E003",
            f"{where} is {entry!r}; a pair must hold one SyncThrottle and "
            "one AsyncThrottle",
        )
    return None


def problems(raw: object) -> list[Problem]:
    """Everything wrong with a value of ``LUATHROTTLE``, in order."""
    if not isinstance(raw, dict):
        return [Problem("E001", f"LUATHROTTLE must be a dict, got {raw!r}")]
    found = [
        Problem("E001", f"LUATHROTTLE has an unknown key {key!r}")
        for key in raw
        if key not in _KEYS
    ]
    policy = raw.get("allow_unsafe_cache", True)
    if not is_setting(policy):
        found.append(
            Problem(
                "E001",
                "LUATHROTTLE['allow_unsafe_cache'] must be True, False or None, "
                f"got {policy!r}",
            )
        )
    try:
        check_on_failure(raw.get("on_failure", "allow"))
    except ValueError as exc:
        found.append(Problem("E001", f"LUATHROTTLE['on_failure']: {exc}"))
    for switch in ("enabled", "shadow"):
        if not isinstance(raw.get(switch, switch == "enabled"), bool):
            found.append(
                Problem(
                    "E001",
                    f"LUATHROTTLE[{switch!r}] must be True or False, "
                    f"got {raw[switch]!r}",
                )
            )
    try:
        check_near_limit(raw.get("near_limit"))
    except (TypeError, ValueError) as exc:
        found.append(Problem("E001", f"LUATHROTTLE['near_limit']: {exc}"))
    try:
        _observers(raw.get("observers", ()))
    except (ImportError, TypeError) as exc:
        found.append(Problem("E001", f"LUATHROTTLE['observers']: {exc}"))
    try:
        check_networks(raw.get("exempt", ()), "LUATHROTTLE['exempt']")
    except (TypeError, ValueError) as exc:
        found.append(Problem("E001", str(exc)))
    throttling = raw.get("throttling", ())
    if not isinstance(throttling, list | tuple):
        found.append(
            Problem(
                "E001",
                f"LUATHROTTLE['throttling'] must be a list, got {throttling!r}",
            )
        )
        return found
    for index, entry in enumerate(throttling):
        problem = _entry_problem(index, entry)
        if problem is not None:
            found.append(problem)
    return found


#: What each dotted path or class of ``observers`` made, made once, so that
#: reading the settings again (a test's override) registers no metric twice.
_made: dict[object, Observer] = {}


def _observers(value: object) -> tuple[Observer, ...]:
    """``LUATHROTTLE["observers"]`` as observers.

    Raises:
        ImportError: a dotted path names nothing.
        TypeError: the value is not a list, or an item is no observer.
    """
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(f"must be a list of observers or dotted paths, got {value!r}")
    found = []
    for item in value:
        observer = _made.get(item) if isinstance(item, str | type) else item
        if observer is None:
            made = import_string(item) if isinstance(item, str) else item
            if isinstance(made, type):
                made = made()
            if not callable(made):
                raise TypeError(f"{item!r} is not callable")
            observer = _made[item] = made
        if not callable(observer):
            raise TypeError(f"{item!r} is not callable")
        found.append(observer)
    return tuple(found)


_cached: Config | None = None
#: The observers the settings added, to remove when they change.
_added: tuple[Observer, ...] = ()


def _apply(config: Config) -> None:
    """Make the process follow ``config``: the off switch and the
    observers."""
    global _added
    SWITCH.set_django(config.enabled)
    if config.observers != _added:
        for observer in _added:
            remove_observer(observer)
        for observer in config.observers:
            add_observer(observer)
        _added = config.observers


def get_config() -> Config:
    """The validated settings, read once until they change.

    Raises:
        ImproperlyConfigured: naming the first thing that is wrong.
    """
    global _cached
    if _cached is None:
        raw = _raw()
        found = problems(raw)
        if found:
            raise ImproperlyConfigured(found[0].detail)
        raw = cast(dict[str, Any], raw)
        _cached = Config(
            throttling=tuple(raw.get("throttling", ())),
            allow_unsafe_cache=raw.get("allow_unsafe_cache", True),
            on_failure=raw.get("on_failure", "allow"),
            enabled=raw.get("enabled", True),
            shadow=raw.get("shadow", False),
            near_limit=check_near_limit(raw.get("near_limit")),
            observers=_observers(raw.get("observers", ())),
            clients=Clients(exempt=raw.get("exempt", ())),
        )
        _apply(_cached)
    return _cached


def apply_settings() -> None:
    """Follow the settings now (at start, and when they change), unless
    they are wrong: the system checks, or the first request, say how."""
    if not problems(_raw()):
        get_config()


def _forget(*, setting: str, **kwargs: Any) -> None:
    global _cached
    if setting in ("LUATHROTTLE", "CACHES"):
        _cached = None
        apply_settings()


setting_changed.connect(_forget, dispatch_uid="luathrottle.django.conf")
