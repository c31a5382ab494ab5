"""A child process for the DRF race: requests through a real APIView.

Each child is a fresh interpreter that configures Django from
tests/django_settings.py, warms up, waits for the others at a barrier, then
sends its requests to one view, all from one client address.
"""

from django.conf import settings

RATE = "5/minute"


def build_views():
    """The two views of the race: luathrottle's throttle and DRF's own, both
    on Django's RedisCache (the ``redis`` alias)."""
    from django.core.cache import caches
    from rest_framework import throttling
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from luathrottle import drf
    from luathrottle.backends.django_cache import SyncDjangoCache

    class LuaAnon(drf.AnonRateThrottle):
        rate = RATE
        backend = SyncDjangoCache("redis")

    class DrfAnon(throttling.AnonRateThrottle):
        rate = RATE
        cache = caches["redis"]

    class LuaView(APIView):
        throttle_classes = (LuaAnon,)

        def get(self, request):
            return Response({"ok": True})

    class DrfView(APIView):
        throttle_classes = (DrfAnon,)

        def get(self, request):
            return Response({"ok": True})

    return {"luathrottle": LuaView.as_view(), "drf": DrfView.as_view()}


def race(url, which, requests, barrier, results):
    """A child's entry point: ``requests`` GETs to the ``which`` view."""
    from django_settings import build_settings

    settings.configure(**build_settings(url))
    import django

    django.setup()
    from rest_framework.test import APIRequestFactory

    view = build_views()[which]
    factory = APIRequestFactory()
    # Warm up on another address: connect, load the script, import lazily.
    view(factory.get("/", REMOTE_ADDR="198.51.100.1"))
    barrier.wait(timeout=120)
    statuses = [
        view(factory.get("/", REMOTE_ADDR="203.0.113.7")).status_code
        for _ in range(requests)
    ]
    results.put(statuses.count(200))
