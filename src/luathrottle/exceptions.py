"""The errors luathrottle raises.

Misuse (a bad argument, a backend that cannot serve a limiter) raises the
built-in ``ValueError`` or ``TypeError`` naming the argument. Everything the
store does wrong is translated, in the backend that talked to it, into one of
the classes below, with the original exception chained.
"""

__all__ = ["BackendError", "LuathrottleError"]


class LuathrottleError(Exception):
    """The root of every error luathrottle raises on its own account."""


class BackendError(LuathrottleError):
    """The store could not run a script: connection, timeout or script error."""
