"""A child process for the dmr race: requests through a real Controller.

Each child is a fresh interpreter that configures Django from
tests/django_settings.py, warms up, waits for the others at a barrier, then
sends its requests to one controller, all from one client address.
"""

from django.conf import settings


def build_views():
    """Two controllers limited to 5 a minute on Django's RedisCache (the
    ``redis`` alias): one by luathrottle.dmr, one by dmr's own throttle."""
    from dmr import Controller
    from dmr.plugins.pydantic import PydanticSerializer
    from dmr.throttling import Rate
    from dmr.throttling import SyncThrottle as DmrThrottle
    from dmr.throttling.backends import SyncDjangoCache as DmrCache

    from luathrottle import dmr

    class Ours(Controller[PydanticSerializer]):
        throttling = (
            dmr.SyncThrottle(5, Rate.minute, backend=dmr.SyncDjangoCache("redis")),
        )

        def get(self) -> str:
            return "inside"

    class Theirs(Controller[PydanticSerializer]):
        throttling = (DmrThrottle(5, Rate.minute, backend=DmrCache("redis")),)

        def get(self) -> str:
            return "inside"

    return {"luathrottle": Ours.as_view(), "dmr": Theirs.as_view()}


def race(url, which, requests, barrier, results):
    """A child's entry point: ``requests`` GETs to the ``which`` view."""
    from django_settings import build_settings

    settings.configure(**build_settings(url))
    import django

    django.setup()
    from dmr.test import DMRRequestFactory

    view = build_views()[which]
    factory = DMRRequestFactory()
    view(factory.get("/", REMOTE_ADDR="198.51.100.1"))  # warm up
    barrier.wait(timeout=120)
    statuses = [
        view(factory.get("/", REMOTE_ADDR="203.0.113.7")).status_code
        for _ in range(requests)
    ]
    results.put(statuses.count(200))
