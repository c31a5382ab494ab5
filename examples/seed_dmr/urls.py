"""The paths of seed_project, each served by the chapter's dmr controller."""

import os

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from seed_dmr.chapter import (
    after_auth,
    cache_name,
    class_level,
    custom_seconds,
    error_response,
    ietf_draft,
    joined_levels,
    leaky_bucket,
    login,
    method_level,
    no_retry_after,
    redis_client,
    report,
    settings_level,
)


def health(request: HttpRequest) -> HttpResponse:
    """Unthrottled: the server is up, and which worker process answers."""
    return JsonResponse({"status": "ok", "pid": os.getpid()})


urlpatterns = [
    path("health/", health),
    path("api/method-level/sync/", method_level.SyncController.as_view()),
    path("api/class-level/async/", class_level.AsyncController.as_view()),
    path("api/settings-level/sync/", settings_level.SyncController.as_view()),
    path("api/settings-level/async/", settings_level.AsyncController.as_view()),
    path("api/joined-levels/sync/", joined_levels.SyncController.as_view()),
    path("api/custom-seconds/sync/", custom_seconds.SyncController.as_view()),
    path("api/cache-name/sync/", cache_name.SyncController.as_view()),
    path("api/redis-client/sync/", redis_client.SyncController.as_view()),
    path("api/leaky-bucket/sync/", leaky_bucket.SyncController.as_view()),
    path("api/login/sync/", login.LoginController.as_view()),
    path("api/after-auth/sync/", after_auth.SyncController.as_view()),
    path("api/after-auth/async/", after_auth.AsyncController.as_view()),
    path("api/no-retry-after/async/", no_retry_after.AsyncController.as_view()),
    path("api/ietf-draft/sync/", ietf_draft.SyncController.as_view()),
    path("api/report/async/", report.AsyncController.as_view()),
    path("api/error-response/sync/", error_response.SyncController.as_view()),
    path("api/error-response/async/", error_response.AsyncController.as_view()),
]
