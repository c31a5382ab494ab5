"""Django settings for the test suite, around the session's real Redis."""

from typing import Any


def build_settings(redis_url: str) -> dict[str, Any]:
    """Settings with a locmem default cache and Redis-backed caches.

    Database 0 serves the luathrottle backends; Django's RedisCache uses
    database 1, django-redis database 2 and django-valkey database 3, so
    each can be flushed alone.
    """
    base = redis_url.rsplit("/", 1)[0]
    return {
        "DEBUG": False,
        "SECRET_KEY": "luathrottle-tests",
        "ALLOWED_HOSTS": ["*"],
        "USE_TZ": True,
        "ROOT_URLCONF": "django_urls",
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "luathrottle.django",
        ],
        "MIDDLEWARE": [
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        "DATABASES": {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
        },
        "CACHES": {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "redis": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"{base}/1",
                "KEY_PREFIX": "site",
                "VERSION": 3,
            },
            "django_redis": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": f"{base}/2",
                "KEY_PREFIX": "dr",
            },
            "django_valkey": {
                "BACKEND": "django_valkey.cache.ValkeyCache",
                "LOCATION": f"{base}/3",
                "KEY_PREFIX": "dv",
            },
            "dummy": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
            "database": {
                "BACKEND": "django.core.cache.backends.db.DatabaseCache",
                "LOCATION": "luathrottle_cache",
            },
        },
        "LUATHROTTLE": {},
    }
