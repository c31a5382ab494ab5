"""One value per running event loop, for what asyncio ties to a loop."""

import asyncio
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["PerLoop"]

_T = TypeVar("_T")


class PerLoop(Generic[_T]):
    """One value per running event loop, built on first use in that loop.

    asyncio clients and locks belong to the loop that first used them, so
    none is shared between loops. Values of closed loops are dropped when a
    new loop arrives.
    """

    def __init__(self) -> None:
        self._values: dict[asyncio.AbstractEventLoop, _T] = {}
        self._guard = threading.Lock()

    def get(self, factory: Callable[[], _T]) -> _T:
        """The running loop's value, built by ``factory`` the first time."""
        loop = asyncio.get_running_loop()
        with self._guard:
            value = self._values.get(loop)
            if value is None:
                self._values = {
                    key: item
                    for key, item in self._values.items()
                    if not key.is_closed()
                }
                value = self._values[loop] = factory()
            return value

    def pop(self) -> _T | None:
        """Forget the running loop's value, and return it if there was one."""
        with self._guard:
            return self._values.pop(asyncio.get_running_loop(), None)
