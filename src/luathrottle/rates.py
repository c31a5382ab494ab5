"""Rates and limits: how many requests, over how many seconds."""

import enum
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

__all__ = ["MAX_DURATION", "MAX_LIMITS", "MAX_NAME", "MAX_REQUESTS", "Limit", "Rate"]

#: The most requests one limit admits per window. The scripts' numbers are
#: doubles, exact below 2**53, and a count plus a cost (which a limiter sends
#: as at most max_requests + 1) must stay below that.
MAX_REQUESTS = 10**15
#: The longest window, ten years of 365 days, in seconds: a state (a window's
#: end, or when a bucket will be empty, in microseconds since 1970) stays
#: below 2**53, so exact, until the year 2240.
MAX_DURATION = 10 * 365 * 86_400
#: The most limits one script call decides: one call blocks a Redis server
#: for about 3 microseconds per limit.
MAX_LIMITS = 64
#: The longest name of a limit: names go into logs and response headers.
MAX_NAME = 100


class Rate(enum.IntEnum):
    """Common durations, in seconds. A plain number of seconds works too."""

    second = 1
    minute = 60
    hour = 60 * 60
    day = 24 * 60 * 60


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``max_requests`` units of cost every ``duration`` seconds.

    Args:
        max_requests: requests admitted per window, an int from 1 to
            ``MAX_REQUESTS`` (10**15).
        duration: the window in seconds, an int (or ``Rate``) from 1 to
            ``MAX_DURATION`` (ten years).
        name: how headers and logs call this limit, at most ``MAX_NAME``
            printable characters; ``"5/60s"`` by default.
        shadow: the limit is on trial: the store decides and counts it as
            ever, but it refuses nothing and shows no quota; observers see
            its would-be denials as ``Outcome.SHADOW_DENIED``. Its counts do
            not depend on it, so dropping it enforces the limit as counted.
        penalty: seconds (an int or a float above 0, at most
            ``MAX_DURATION``) for which a key this limit denies is denied
            every hit, counted from the denial, with ``retry_after`` the
            penalty left; None (the default) for no penalty. See
            ``docs/penalty.md``.

    Raises:
        TypeError: an argument is not an int (bools and floats included), the
            name is not a str, ``shadow`` is not a bool, or ``penalty`` is
            not a number or None.
        ValueError: an argument is below 1 or too large to stay exact, the
            name is too long or not printable, or ``penalty`` is not above
            0 (by at least a microsecond) or longer than ``MAX_DURATION``.
    """

    max_requests: int
    duration: int
    name: str = ""
    shadow: bool = False
    penalty: float | None = None

    def __post_init__(self) -> None:
        _check_count("max_requests", self.max_requests, MAX_REQUESTS)
        _check_count("duration_in_seconds", self.duration, MAX_DURATION)
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {self.name!r}")
        if len(self.name) > MAX_NAME or not self.name.isprintable():
            raise ValueError(
                f"name must be at most {MAX_NAME} printable characters, "
                f"got {self.name[: MAX_NAME + 1]!r}"
            )
        if not isinstance(self.shadow, bool):
            raise TypeError(f"shadow must be True or False, got {self.shadow!r}")
        check_penalty(self.penalty)
        object.__setattr__(self, "duration", int(self.duration))
        if not self.name:
            object.__setattr__(self, "name", f"{self.max_requests}/{self.duration}s")


def check_penalty(penalty: object) -> float | None:
    """``penalty``, validated: None, or seconds above 0 (by at least a
    microsecond, what the scripts count in) and at most ``MAX_DURATION``.

    Raises:
        TypeError, ValueError: naming ``penalty``.
    """
    if penalty is None:
        return None
    if isinstance(penalty, bool) or not isinstance(penalty, int | float):
        raise TypeError(
            "penalty must be a number of seconds or None, got "
            f"{type(penalty).__name__} {penalty!r}"
        )
    if not (math.isfinite(penalty) and 0 < penalty <= MAX_DURATION) or (
        penalty_us(penalty) < 1
    ):
        raise ValueError(
            "penalty must be above 0 (at least a microsecond) and at most "
            f"{MAX_DURATION} seconds, got {penalty!r}"
        )
    return penalty


def penalty_us(penalty: float | None) -> int:
    """A penalty in whole microseconds, as the scripts take it; 0 for
    none."""
    return 0 if penalty is None else round(penalty * 1_000_000)


def penalised(limits: tuple[Limit, ...], penalty: float | None) -> tuple[Limit, ...]:
    """``limits``, each with ``penalty`` unless it has one of its own: a
    limiter's or a throttle's ``penalty=`` is its limits' default."""
    if penalty is None:
        return limits
    return tuple(
        limit if limit.penalty is not None else replace(limit, penalty=penalty)
        for limit in limits
    )


def renamed(limit: Limit, name: str, penalty: float | None) -> Limit:
    """``limit`` called ``name``, with ``penalty`` unless it has one of its
    own: a throttle's limit, named after its cache key."""
    own = limit.penalty
    return replace(limit, name=name, penalty=penalty if own is None else own)


def _check_count(argument: str, value: object, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{argument} must be an int, got {type(value).__name__} {value!r}"
        )
    if not 1 <= value <= maximum:
        raise ValueError(f"{argument} must be between 1 and {maximum}, got {value!r}")


def check_limit_count(count: int, argument: str) -> None:
    """Refuse more limits than one script call decides.

    Raises:
        ValueError: naming ``argument``, when ``count`` is above
            ``MAX_LIMITS``.
    """
    if count > MAX_LIMITS:
        raise ValueError(
            f"{argument} holds {count} limits; one call decides at most {MAX_LIMITS}"
        )


_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_LIMIT_TEXT = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*")


def _parse_text(text: str) -> Limit:
    match = _LIMIT_TEXT.fullmatch(text.lower())
    if match is None or match.group(3) not in _UNITS:
        raise ValueError(
            f"limit {text!r} is not of the form '5/minute' or '100/10s' "
            f"(units: {', '.join(sorted(_UNITS))})"
        )
    count, multiple, unit = match.groups()
    return Limit(int(count), int(multiple or 1) * _UNITS[unit])


LimitSpec = str | Limit | tuple[int, int]


def parse_limits(
    max_requests: int | LimitSpec | Iterable[LimitSpec],
    duration_in_seconds: int | None = None,
) -> tuple[Limit, ...]:
    """Read the limits a limiter or throttle was given.

    Args:
        max_requests: an int (with ``duration_in_seconds``), a string such as
            ``"5/minute"`` or ``"100/10s"``, a ``Limit``, a ``(max_requests,
            duration)`` pair, or an iterable of strings, limits and pairs.
        duration_in_seconds: the window for an int ``max_requests``.

    Returns:
        The limits, in the order given.

    Raises:
        TypeError, ValueError: naming the argument that is wrong.
    """
    if isinstance(max_requests, int) and not isinstance(max_requests, bool):
        if duration_in_seconds is None:
            raise TypeError("duration_in_seconds is required with an int max_requests")
        return (Limit(max_requests, duration_in_seconds),)
    if duration_in_seconds is not None:
        if not isinstance(max_requests, str | Iterable):
            # A float or a bool where an int belongs: the count is wrong,
            # not the duration beside it.
            _check_count("max_requests", max_requests, MAX_REQUESTS)
        raise TypeError(
            "duration_in_seconds goes only with an int max_requests, "
            f"not with {max_requests!r}"
        )
    if isinstance(max_requests, str | Limit | tuple):
        return (_parse_one(max_requests),)
    if not isinstance(max_requests, Iterable):
        raise TypeError(
            f"max_requests must be an int, a limit string or a list of them, "
            f"got {type(max_requests).__name__} {max_requests!r}"
        )
    limits = tuple(_parse_one(spec) for spec in max_requests)
    if not limits:
        raise ValueError("max_requests must hold at least one limit, got none")
    check_limit_count(len(limits), "max_requests")
    names = [limit.name for limit in limits]
    windows = [(limit.max_requests, limit.duration) for limit in limits]
    if len(set(names)) != len(names) or len(set(windows)) != len(windows):
        raise ValueError(f"max_requests holds the same limit twice: {names}")
    return limits


def parse_limits_named(
    limits: LimitSpec | Iterable[LimitSpec], argument: str
) -> tuple[Limit, ...]:
    """Read limits given as one argument, ``limits=`` of an adapter or of a
    call, where no ``duration_in_seconds`` stands beside a count.

    Raises:
        TypeError, ValueError: naming ``argument``.
    """
    if isinstance(limits, int | float):
        raise TypeError(
            f"{argument} must be a limit string such as '100/minute', a Limit, "
            "a (max_requests, duration) pair, or a list of them, got "
            f"{type(limits).__name__} {limits!r}"
        )
    try:
        return parse_limits(limits)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{argument}: {exc}") from None


def parse_limit(
    max_requests: int | LimitSpec | Iterable[LimitSpec],
    duration_in_seconds: int | None = None,
) -> Limit:
    """Read the one limit a throttle was given, in any form ``parse_limits``
    reads.

    Raises:
        TypeError, ValueError: naming the argument that is wrong, or when
            ``max_requests`` holds several limits.
    """
    limits = parse_limits(max_requests, duration_in_seconds)
    if len(limits) != 1:
        raise ValueError(
            f"max_requests must be one limit, got {len(limits)}: "
            f"{[limit.name for limit in limits]}; give each its own throttle"
        )
    return limits[0]


def _parse_one(spec: object) -> Limit:
    if isinstance(spec, Limit):
        return spec
    if isinstance(spec, str):
        return _parse_text(spec)
    if isinstance(spec, tuple) and len(spec) == 2:
        return Limit(spec[0], spec[1])
    raise TypeError(
        f"max_requests holds {spec!r}; each limit must be a string such as "
        "'5/minute', a Limit, or a (max_requests, duration) pair"
    )


#: DRF's periods, by their first letter: DRF reads "5/mins" and "2/hr" so.
_DRF_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_drf_rate(rate: object) -> tuple[int, int]:
    """A DRF throttle rate as ``(num_requests, duration)``, in every form
    luathrottle reads (``"5/2h"``, ``"100/10s"``) and every form DRF reads
    (``"5/mins"``: the period's first letter).

    Raises:
        ValueError: naming the rate and the forms it may take.
    """
    try:
        (limit,) = parse_limits_named(rate, "rate")  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        num, _, period = rate.partition("/") if isinstance(rate, str) else ("", "", "")
        duration = _DRF_PERIODS.get(period[:1])
        if not num.isdigit() or duration is None or int(num) < 1:
            raise ValueError(str(exc)) from exc
        return int(num), duration
    return limit.max_requests, limit.duration
