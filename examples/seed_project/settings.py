"""Settings of the seed example project: Redis-backed caches.

Every cache is Django's ``RedisCache`` on the server at
``LUATHROTTLE_REDIS_URL`` (``redis://127.0.0.1:6379/0`` by default), so each
throttling decision is one atomic script call on that server and limits
stay exact with any number of workers::

    cd examples
    LUATHROTTLE_REDIS_URL=redis://127.0.0.1:6379/0 \\
        python -m uvicorn seed_project.asgi:application --workers 2

``seed_project.settings_embedded`` runs the same project without Redis.
"""

import os
from typing import Any

from luathrottle.django import AsyncThrottle, Rate, SyncThrottle

REDIS_URL = os.environ.get("LUATHROTTLE_REDIS_URL", "redis://127.0.0.1:6379/0")

DEBUG = False
SECRET_KEY = os.environ.get("SEED_PROJECT_SECRET_KEY", "seed-project-not-secret")
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ROOT_URLCONF = "seed_project.urls"
ASGI_APPLICATION = "seed_project.asgi.application"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "luathrottle.django",
]

# Django's default middleware and LocaleMiddleware: the headers the seed's
# responses carry besides the rate-limit ones (Vary, Content-Language,
# Content-Length, X-Frame-Options, X-Content-Type-Options, Referrer-Policy,
# Cross-Origin-Opener-Policy).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# No view queries the database: nobody logs in, and an anonymous session
# user needs no query.
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

LANGUAGE_CODE = "en"
USE_I18N = True
USE_TZ = True


def _redis_cache(prefix: str) -> dict[str, str]:
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": prefix,
    }


CACHES = {
    # Throttles without a backend store their state here.
    "default": _redis_cache("seed"),
    # The seed's "custom Django cache name" example.
    "throttling": _redis_cache("seed-throttling"),
    # The seed's "custom Redis client" example takes this cache's client.
    "redis": _redis_cache("seed-redis"),
}

# The seed's settings-level example, made generous. Settings-level throttles
# guard every view (async views take the AsyncThrottle of the pair), each
# view counting on its own. The seed's SyncThrottle(5, Rate.minute) would
# answer first for the examples whose sessions send a view six requests
# (custom seconds, login), with its own Retry-After; at 100 per minute it
# never answers for any session, and a 429 only names the throttles that
# denied. ``/api/settings-level/`` shows it at work in its headers. Views
# that report every throttle they ran (``ThrottlingReport``) set
# ``throttling = None``, which turns settings-level throttles off for them,
# so that their headers list only their own throttles, as in the seed.
LUATHROTTLE: dict[str, Any] = {
    "throttling": [(SyncThrottle(100, Rate.minute), AsyncThrottle(100, Rate.minute))],
}
