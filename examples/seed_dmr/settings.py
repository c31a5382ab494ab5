"""Settings of the dmr example project: Redis-backed caches, as in
``seed_project.settings``, with django-modern-rest installed.

::

    cd examples
    LUATHROTTLE_REDIS_URL=redis://127.0.0.1:6379/0 \\
        python -m uvicorn seed_dmr.asgi:application --workers 2
"""

import os

from dmr.settings import Settings

from luathrottle.dmr import AsyncThrottle, Rate, SyncOrAsyncThrottle, SyncThrottle

REDIS_URL = os.environ.get("LUATHROTTLE_REDIS_URL", "redis://127.0.0.1:6379/0")

DEBUG = False
SECRET_KEY = os.environ.get("SEED_PROJECT_SECRET_KEY", "seed-project-not-secret")
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ROOT_URLCONF = "seed_dmr.urls"
ASGI_APPLICATION = "seed_dmr.asgi.application"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "dmr",
    "luathrottle.django",
]

# The headers the chapter's responses carry besides the rate-limit ones.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
    "default": _redis_cache("seed"),
    "throttling": _redis_cache("seed-throttling"),
    "redis": _redis_cache("seed-redis"),
}

# The chapter's settings-level example, made generous as in seed_project:
# dmr 0.16 uses the most specific level that sets throttling, so these guard
# only the controllers that set none.
DMR_SETTINGS = {
    Settings.throttling: [
        SyncOrAsyncThrottle(
            SyncThrottle(100, Rate.minute), AsyncThrottle(100, Rate.minute)
        )
    ],
}
