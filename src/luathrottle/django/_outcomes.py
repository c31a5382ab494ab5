"""What a request's throttles decided, kept on the request for
``ThrottlingReport`` and the headers of every response."""

from collections.abc import Iterable
from typing import Any

from luathrottle._answers import headers_of
from luathrottle._checks import Verdict

__all__ = [
    "ThrottlingReport",
    "forget_verdicts",
    "headers_for",
    "record_verdicts",
    "recorded_verdicts",
]

_VERDICTS_ATTRIBUTE = "_luathrottle_verdicts"


def headers_for(verdicts: Iterable[Verdict]) -> dict[str, str]:
    """The headers of ``verdicts``: each throttle's providers over its
    decision."""
    return headers_of(
        (verdict.check.source.response_headers, verdict.decision.limits)
        for verdict in verdicts
    )


def record_verdicts(request: Any, verdicts: Iterable[Verdict]) -> None:
    """Keep ``verdicts`` on ``request``, for ``ThrottlingReport``."""
    recorded: list[Verdict] | None = getattr(request, _VERDICTS_ATTRIBUTE, None)
    if recorded is None:
        setattr(request, _VERDICTS_ATTRIBUTE, list(verdicts))
    else:
        recorded.extend(verdicts)


def forget_verdicts(request: Any) -> None:
    """Start ``request`` over, before its throttles run."""
    setattr(request, _VERDICTS_ATTRIBUTE, [])


def recorded_verdicts(request: Any) -> tuple[Verdict, ...]:
    """What the throttles of ``request`` decided so far."""
    return tuple(getattr(request, _VERDICTS_ATTRIBUTE, ()))


class ThrottlingReport:
    """The rate-limit headers of every throttle the request went through.

    Reads what the request's throttles already decided, so it asks no cache
    anything. Throttles that a cache key skipped, or that a stage never
    reached, are not in it.

    Args:
        request: the request being served.
    """

    def __init__(self, request: Any) -> None:
        self.verdicts: tuple[Verdict, ...] = recorded_verdicts(request)

    def report(self) -> dict[str, str]:
        """The headers, for sync views."""
        return headers_for(self.verdicts)

    async def areport(self) -> dict[str, str]:
        """The headers, for async views."""
        return headers_for(self.verdicts)
