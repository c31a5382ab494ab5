"""Settings of the end-to-end benchmark's project: no middleware, no
database, the ``default`` cache on ``BENCH_REDIS_URL``, so that a request
costs Django's handler, the view and its throttles, nothing else."""

import os

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

DEBUG = False
SECRET_KEY = "bench-not-secret"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "bench_app.urls"
INSTALLED_APPS = ["luathrottle.django"]
MIDDLEWARE: list[str] = []
DATABASES: dict[str, object] = {}
USE_TZ = True
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "bench-e2e",
    }
}
# MemoryBackend throttles are the point of some views: skip the unsafe check.
LUATHROTTLE = {"allow_unsafe_cache": None}
