"""Runs Django REST framework's own throttling tests against luathrottle.drf.

``test_throttling.py`` is DRF 3.18.3's, with only its import of
``rest_framework.throttling`` changed to ``luathrottle.drf``. Its tests of
DRF's internals are left out here, each with the reason, and nowhere else;
docs/drf.md lists them too.
"""

from collections.abc import Iterator

import pytest

#: DRF's tests that read DRF's internals rather than its contract, by name,
#: with why luathrottle.drf does not pass them.
INTERNAL = {
    "SimpleRateThrottleTests::test_wait_returns_correct_waiting_time_without_history": (
        "sets DRF's request log, `history`, by hand and expects wait() to "
        "compute from it; luathrottle keeps no history in the throttle (the "
        "store holds a counter), and wait() answers the last decision"
    ),
}


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Deselect the tests of DRF's internals, so that no skip hides them."""
    here = "drf_suite/test_throttling.py::"
    left_out = [item for item in items if _internal(item.nodeid, here)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]


def _internal(nodeid: str, here: str) -> bool:
    _, found, name = nodeid.partition(here)
    return bool(found) and name in INTERNAL


@pytest.fixture(autouse=True)
def _drf_leaves_nothing_behind() -> Iterator[None]:
    """DRF's tests set ``SimpleRateThrottle.scope`` and
    ``api_settings.NUM_PROXIES`` and never restore them (DRF's suite runs
    alone); restored here so that the other test files see neither."""
    # Imported once Django's settings are configured.
    from rest_framework.settings import api_settings

    from luathrottle.drf import SimpleRateThrottle

    scope = SimpleRateThrottle.__dict__.get("scope")
    yield
    if scope is None:
        if "scope" in SimpleRateThrottle.__dict__:
            del SimpleRateThrottle.scope
    else:
        SimpleRateThrottle.scope = scope
    api_settings.reload()
    api_settings.__dict__.pop("NUM_PROXIES", None)
