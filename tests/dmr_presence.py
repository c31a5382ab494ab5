"""Whether django-modern-rest (``dmr``) is installed, and what importing
``luathrottle.dmr`` does without it.

dmr 0.16 requires Django 5, so the lowest supported combination (``nox -s
lowest``, on Django 4.2) runs without it. There, importing ``luathrottle.dmr``
or any module under it raises the ImportError that names the extra to
install, and dmr's own modules are simply absent: the tests of dmr's door
check that instead.
"""

import importlib.util
import re
from typing import Any

import pytest

__all__ = ["INSTALLED", "refused"]

INSTALLED = importlib.util.find_spec("dmr") is not None

_NEEDS_DMR = re.escape(
    "luathrottle.dmr needs django-modern-rest: pip install 'luathrottle[dmr]'"
)


def refused(module: str) -> Any:
    """``pytest.raises`` for importing ``module`` without dmr: luathrottle's
    ImportError for a module of ``luathrottle.dmr``, Python's for dmr's own."""
    if module == "luathrottle.dmr" or module.startswith("luathrottle.dmr."):
        return pytest.raises(ImportError, match=f"^{_NEEDS_DMR}$")
    return pytest.raises(ModuleNotFoundError, match=r"^No module named 'dmr'$")
