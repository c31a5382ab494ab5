"""Included by ``check_urls``, two levels deep."""

from django.urls import include, path

import check_views

urlpatterns = [
    path(
        "v1/",
        include([path("included/", check_views.Included.as_view())]),
    ),
]
