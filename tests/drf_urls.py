"""URLs of the DRF tests: a ViewSet through DRF's router."""

from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.viewsets import ViewSet

from luathrottle.backends.memory import MemoryBackend
from luathrottle.drf import AnonRateThrottle, RateLimitHeadersMixin

#: The ViewSet's store; the tests empty it between runs.
BACKEND = MemoryBackend()


class ThreePerMinute(AnonRateThrottle):
    rate = "3/minute"
    backend = BACKEND


class Orders(RateLimitHeadersMixin, ViewSet):
    throttle_classes = (ThreePerMinute,)

    def list(self, request):
        return Response([{"id": 1}])

    def retrieve(self, request, pk=None):
        return Response({"id": int(pk)})


router = SimpleRouter()
router.register("orders", Orders, basename="orders")
urlpatterns = router.urls
