"""``luathrottle.E006``: a view class that sets throttling attributes but
does not derive from ``ThrottledView`` is reported by ``manage.py check``,
found through the real URLconf, includes and decorators too."""

import pytest
from django.core import checks
from django.test import override_settings

from luathrottle.django.checks import E006, check_views

FORGOTTEN = {
    "check_views.ForgotThrottledView": "throttling",
    "check_views.HeadersOnly": "throttling_headers_on_every_response",
    "check_views.PolicyOnly": "throttling_allow_unsafe_cache",
    "check_views.Inherits": "throttling",
    "check_views.Exempt": "throttling",
    "check_views.Included": "throttling",
}


@pytest.fixture
def urlconf():
    with override_settings(ROOT_URLCONF="check_urls"):
        yield


def test_every_view_class_that_forgot_throttled_view_is_an_error(urlconf):
    found = check_views()
    assert sorted(message.obj for message in found) == sorted(FORGOTTEN)
    for message in found:
        assert message.id == "luathrottle.E006"
        assert message.level == checks.ERROR
        assert message.msg.startswith(f"{message.obj} sets {FORGOTTEN[message.obj]} ")
        assert "does not derive from ThrottledView" in message.msg
        assert message.hint == E006.hint
        assert "Derive the view class from luathrottle.django.ThrottledView" in (
            message.hint
        )


def test_manage_py_check_runs_it_with_the_url_checks(urlconf):
    for tags in (["luathrottle"], [checks.Tags.urls]):
        ids = [message.id for message in checks.run_checks(tags=tags)]
        assert ids.count("luathrottle.E006") == len(FORGOTTEN)


def test_the_message_names_the_class_and_the_cure(urlconf):
    text = {message.obj: str(message) for message in check_views()}
    assert text["check_views.Included"] == (
        "check_views.Included: (luathrottle.E006) check_views.Included sets "
        "throttling but does not derive from ThrottledView, so its throttles "
        "never run.\n\tHINT: Derive the view class from "
        "luathrottle.django.ThrottledView."
    )


def test_only_the_urlconfs_own_views_are_reported():
    # The suite's own URLconf has none; an included URLconf alone has one.
    assert check_views() == []
    with override_settings(ROOT_URLCONF="check_urls_included"):
        assert [message.obj for message in check_views()] == ["check_views.Included"]
