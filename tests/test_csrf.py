"""CSRF and throttles, as the CSRF section of docs/guide/django.md says:
throttles run inside the view, so CsrfViewMiddleware refuses a POST without
a token (403) before any throttle counts it; API views exempt from CSRF are
throttled."""

import pytest
from django.test import Client, override_settings

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]


@pytest.fixture
def client():
    with override_settings(ROOT_URLCONF="csrf_urls", MIDDLEWARE=MIDDLEWARE):
        yield Client(enforce_csrf_checks=True)


@pytest.mark.parametrize("path", ["/exempt/", "/exempt-function/"])
def test_a_csrf_exempt_view_is_throttled(client, path):
    statuses = [client.post(path).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_without_the_exemption_csrf_refuses_before_any_throttle(client):
    statuses = [client.post("/checked/").status_code for _ in range(4)]
    assert statuses == [403] * 4
    # The refused POSTs never reached the view: its 2-per-minute class-level
    # throttle has counted nothing yet.
    assert [client.get("/checked/").status_code for _ in range(3)] == [200, 200, 429]
