"""One path per example: the seed serves each at /api/sync/ or /api/async/."""

import os

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from seed_project.views import customizing, defining, execution, headers, reports


def health(request: HttpRequest) -> HttpResponse:
    """Unthrottled: the server is up, and which worker process answers."""
    return JsonResponse({"status": "ok", "pid": os.getpid()})


urlpatterns = [
    path("health/", health),
    # Defining throttling
    path("api/method-level/sync/", defining.MethodLevelController.as_view()),
    path("api/class-level/async/", defining.ClassLevelController.as_view()),
    path("api/settings-level/sync/", defining.SettingsLevelController.as_view()),
    path("api/settings-level/async/", defining.AsyncSettingsLevelController.as_view()),
    path("api/joined-levels/sync/", defining.JoinedLevelsController.as_view()),
    # Customizing throttling
    path("api/custom-seconds/sync/", customizing.CustomSecondsController.as_view()),
    path("api/cache-name/sync/", customizing.CacheNameController.as_view()),
    path("api/redis-client/sync/", customizing.RedisClientController.as_view()),
    path("api/leaky-bucket/sync/", customizing.LeakyBucketController.as_view()),
    path("api/login/sync/", customizing.LoginController.as_view()),
    # Throttling execution
    path("api/after-auth/sync/", execution.AfterAuthController.as_view()),
    path("api/after-auth/async/", execution.AsyncAfterAuthController.as_view()),
    # Headers
    path("api/no-retry-after/async/", headers.NoRetryAfterController.as_view()),
    path("api/ietf-draft/sync/", headers.IETFDraftController.as_view()),
    # Throttling reports
    path("api/report/async/", reports.ReportController.as_view()),
    path("api/error-response/sync/", reports.ErrorResponseController.as_view()),
    path("api/error-response/async/", reports.AsyncErrorResponseController.as_view()),
]
