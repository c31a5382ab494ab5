"""A URLconf with view classes that forgot ``ThrottledView``, some behind
``include()`` and decorators (``test_view_checks``)."""

from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

import check_views

urlpatterns = [
    path("forgot/", check_views.ForgotThrottledView.as_view()),
    path("forgot-again/", check_views.ForgotThrottledView.as_view()),
    path("headers/", check_views.HeadersOnly.as_view()),
    path("policy/", check_views.PolicyOnly.as_view()),
    path("inherits/", check_views.Inherits.as_view()),
    path("exempt/", csrf_exempt(check_views.Exempt.as_view())),
    path("throttled/", check_views.Throttled.as_view()),
    path("plain/", check_views.Plain.as_view()),
    path("function/", check_views.function_view),
    path("api/", include("check_urls_included")),
]
