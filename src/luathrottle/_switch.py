"""The global off switch, for tests and emergencies.

Limiting is off when the environment variable ``LUATHROTTLE_ENABLED`` is
``0`` (or ``false``, ``no``, ``off``) when luathrottle is imported, or when
Django's ``LUATHROTTLE["enabled"]`` is False. Either one turns it off: the
environment is the emergency switch that no setting overrides.

While it is off, nothing calls the store and every hit is admitted, with
the reason ``Reason.DISABLED`` and no quota (so no quota headers), and no
observer hears of it; a concurrency lease is granted holding nothing.
"""

import os

__all__ = ["SWITCH", "read_environment"]

_OFF = frozenset({"0", "false", "no", "off"})
_ON = frozenset({"", "1", "true", "yes", "on"})


def read_environment(value: str | None) -> bool:
    """Whether ``LUATHROTTLE_ENABLED=value`` leaves limiting on.

    Raises:
        ValueError: naming the variable and the values it takes.
    """
    if value is None:
        return True
    word = value.strip().lower()
    if word in _OFF:
        return False
    if word in _ON:
        return True
    raise ValueError(
        f"LUATHROTTLE_ENABLED must be 1 or 0 (true/false, yes/no, on/off), "
        f"got {value!r}"
    )


class _Switch:
    """Whether limiting is on: ``on`` is read by every decision, so it is
    a plain attribute, set again whenever one of its sources changes."""

    __slots__ = ("django", "environment", "on")

    def __init__(self) -> None:
        self.environment = read_environment(os.environ.get("LUATHROTTLE_ENABLED"))
        self.django = True
        self.on = self.environment

    def set_django(self, enabled: bool) -> None:
        """Django's ``LUATHROTTLE["enabled"]``, read again."""
        self.django = enabled
        self.on = self.environment and enabled


#: The process's switch.
SWITCH = _Switch()
