"""Configuration errors fail when a throttle or view is built, never later;
unsafe caches are reported at three levels and by the system check."""

import warnings

import fakeredis
import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import override_settings
from django.views import View

from luathrottle.backends.django_cache import AsyncDjangoCache, SyncDjangoCache
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import (
    AsyncThrottle,
    Rate,
    SyncThrottle,
    ThrottledView,
    UnsafeCacheBackendWarning,
    throttle,
)
from luathrottle.django.auth import DjangoSessionAsyncAuth
from luathrottle.django.cache_keys import RemoteAddr
from luathrottle.django.checks import E001, E002, E003, E004, E005, W001


def safe_sync():
    return SyncThrottle(1, Rate.minute, backend=SyncRedis(fakeredis.FakeRedis()))


def safe_async():
    return AsyncThrottle(1, Rate.minute, backend=AsyncRedis(fakeredis.FakeAsyncRedis()))


def root_cause(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


# Mix-ups of sync and async: raised when the decorator or class is applied.


def test_sync_function_view_given_an_async_throttle():
    with pytest.raises(
        ImproperlyConfigured,
        match=r"test_django_config\..*\.mixed is a sync view.*AsyncThrottle",
    ):

        @throttle(safe_async())
        def mixed(request):
            return HttpResponse()


def test_async_function_view_given_a_sync_throttle():
    with pytest.raises(
        ImproperlyConfigured, match=r"amixed is an async view.*SyncThrottle"
    ):

        @throttle(safe_sync())
        async def amixed(request):
            return HttpResponse()


def test_async_handler_given_a_class_level_sync_throttle():
    with pytest.raises(ImproperlyConfigured, match=r"Mixed.get is an async view"):

        class Mixed(ThrottledView):
            throttling = (safe_sync(),)

            async def get(self, request):
                return HttpResponse()


def test_sync_handler_given_an_async_method_throttle():
    with pytest.raises(ImproperlyConfigured, match=r"Mixed.post is a sync view"):

        class Mixed(ThrottledView):
            @throttle(safe_async())
            def post(self, request):
                return HttpResponse()


def test_async_view_given_sync_auth():
    with pytest.raises(ImproperlyConfigured, match="BaseSyncAuth objects"):

        @throttle(auth=[DjangoSessionAsyncAuth()])
        def view(request):
            return HttpResponse()


def test_settings_single_throttle_of_the_other_kind_fails_the_view():
    settings_value = {"throttling": [safe_sync()]}
    refused = pytest.raises(ImproperlyConfigured, match=r"\[0\].*async view.*pair")
    with override_settings(LUATHROTTLE=settings_value), refused:

        @throttle()
        async def view(request):
            return HttpResponse()


# Other configuration errors.


def test_non_throttle_objects_are_named():
    with pytest.raises(ImproperlyConfigured, match="'5/minute' is not a SyncThrottle"):

        @throttle("5/minute")
        def view(request):
            return HttpResponse()

    with pytest.raises(ImproperlyConfigured, match=r"Bad\.throttling must be a tuple"):

        class Bad(ThrottledView):
            throttling = safe_sync()


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ((0, 60), ValueError, "max_requests"),
        ((1.5, 60), TypeError, "max_requests"),
        ((1, 0), ValueError, "duration_in_seconds"),
        ((True, 60), TypeError, "max_requests"),
    ],
)
def test_bad_limits_fail_the_throttle(arguments, error, match):
    with pytest.raises(error, match=match):
        SyncThrottle(*arguments, backend=MemoryBackend())


def test_wrong_backend_kind_fails_the_throttle():
    with pytest.raises(TypeError, match="SyncBackend for SyncThrottle"):
        SyncThrottle(1, 60, backend=AsyncRedis(fakeredis.FakeAsyncRedis()))
    with pytest.raises(TypeError, match="AsyncBackend for AsyncThrottle"):
        AsyncThrottle(1, 60, backend=SyncDjangoCache())
    with pytest.raises(TypeError, match="cache_key must be"):
        SyncThrottle(1, 60, cache_key="ip")
    with pytest.raises(TypeError, match="response_headers"):
        SyncThrottle(1, 60, response_headers=["X-RateLimit"])


def test_unknown_cache_alias_fails_the_view():
    nowhere = SyncThrottle(1, 60, backend=SyncDjangoCache("nowhere"))
    with pytest.raises(
        ImproperlyConfigured, match=r"'nowhere' is not in settings\.CACHES"
    ):

        @throttle(nowhere)
        def view(request):
            return HttpResponse()


def test_two_throttles_on_one_counter_fail_the_view():
    memory = MemoryBackend()
    with pytest.raises(ImproperlyConfigured, match="would share one counter"):

        @throttle(
            SyncThrottle(1, 60, backend=memory),
            SyncThrottle(1, 60, backend=memory),
            allow_unsafe_cache=None,
        )
        def view(request):
            return HttpResponse()


def test_throttle_on_a_plain_view_method_is_refused():
    # Python 3.11 wraps what __set_name__ raises in a RuntimeError; 3.12 and
    # newer raise it as it is, with a note.
    with pytest.raises((RuntimeError, ImproperlyConfigured)) as info:

        class Plain(View):
            @throttle(safe_sync())
            def get(self, request):
                return HttpResponse()

    assert isinstance(root_cause(info.value), ImproperlyConfigured)
    assert "Plain.get needs the class to derive" in str(root_cause(info.value))


def test_throttle_on_a_helper_method_is_refused():
    with pytest.raises(ImproperlyConfigured, match="helper, which handles no HTTP"):

        class View(ThrottledView):
            @throttle(safe_sync())
            def helper(self, request):
                return HttpResponse()


def test_bad_settings_fail_the_view():
    with (
        override_settings(LUATHROTTLE={"throttling": ["5/minute"]}),
        pytest.raises(
            ImproperlyConfigured, match=r"\['throttling'\]\[0\] is '5/minute'"
        ),
    ):

        @throttle()
        def view(request):
            return HttpResponse()


def test_bad_decorator_options_are_type_errors():
    with pytest.raises(TypeError, match="allow_unsafe_cache"):
        throttle(allow_unsafe_cache=1)
    with pytest.raises(TypeError, match="headers_on_every_response"):
        throttle(headers_on_every_response="yes")


# Unsafe caches: the decorator, the class, then the settings decide.


def build_function_view(**options):
    @throttle(SyncThrottle(1, 60), **options)
    def view(request):
        return HttpResponse()

    return view


def build_class_view(**attributes):
    return type(
        "Guarded",
        (ThrottledView,),
        {
            "throttling": (SyncThrottle(1, 60),),
            "get": lambda self, request: HttpResponse(),
            "__module__": __name__,
            **attributes,
        },
    )


def test_default_cache_warns_by_default():
    with pytest.warns(UnsafeCacheBackendWarning, match="LocMemCache"):
        build_function_view()


def test_default_cache_warns_of_a_class_view_too():
    with pytest.warns(UnsafeCacheBackendWarning, match="Guarded"):
        build_class_view()


def test_an_unsafe_cache_warns_once_per_process_with_the_fix():
    def build_three_views():
        build_function_view()
        build_function_view()
        build_class_view()

    with pytest.warns(UnsafeCacheBackendWarning) as warned:
        build_three_views()
    assert len(warned) == 1
    text = str(warned[0].message)
    assert "CACHES['default']: LocMemCache keeps its data in each process" in text
    assert "use a Redis-backed cache" in text
    assert "LUATHROTTLE = {'allow_unsafe_cache': None}" in text
    # Another cache is another warning; changed settings warn afresh.
    with pytest.warns(UnsafeCacheBackendWarning, match="CACHES\\['dummy'\\]"):
        throttle(SyncThrottle(1, 60, backend=SyncDjangoCache("dummy")))(
            lambda request: None
        )
    with override_settings(LUATHROTTLE={}), pytest.warns(UnsafeCacheBackendWarning):
        build_function_view()


@override_settings(LUATHROTTLE={"allow_unsafe_cache": False})
def test_settings_false_raises():
    with pytest.raises(ImproperlyConfigured, match="allow_unsafe_cache is False"):
        build_function_view()
    with pytest.raises(ImproperlyConfigured, match="allow_unsafe_cache is False"):
        build_class_view()


@override_settings(LUATHROTTLE={"allow_unsafe_cache": None})
def test_settings_none_skips():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_function_view()
        build_class_view()


@override_settings(LUATHROTTLE={"allow_unsafe_cache": False})
def test_class_level_overrides_settings():
    with pytest.warns(UnsafeCacheBackendWarning):
        build_class_view(throttling_allow_unsafe_cache=True)
    build_class_view(throttling_allow_unsafe_cache=None)


def test_decorator_level_overrides_class_and_settings():
    refused = pytest.raises(ImproperlyConfigured, match="allow_unsafe_cache is False")
    with override_settings(LUATHROTTLE={"allow_unsafe_cache": None}), refused:
        build_function_view(allow_unsafe_cache=False)
    with pytest.raises(ImproperlyConfigured, match=r"View\.get.*allow_unsafe_cache"):

        class View(ThrottledView):
            throttling_allow_unsafe_cache = None

            @throttle(
                SyncThrottle(1, 60, cache_key=RemoteAddr(name="m")),
                allow_unsafe_cache=False,
            )
            def get(self, request):
                return HttpResponse()


def test_method_throttles_follow_the_class_policy_when_unset():
    class View(ThrottledView):
        throttling_allow_unsafe_cache = None

        @throttle(SyncThrottle(1, 60))
        def get(self, request):
            return HttpResponse()


def test_memory_backend_counts_as_unsafe_and_redis_caches_as_safe():
    with pytest.warns(UnsafeCacheBackendWarning, match="MemoryBackend"):
        throttle(SyncThrottle(1, 60, backend=MemoryBackend()))(lambda request: None)

    @throttle(
        AsyncThrottle(1, 60, backend=AsyncDjangoCache("redis")),
        allow_unsafe_cache=False,
    )
    async def view(request):
        return HttpResponse()


# The system check of settings-level throttles.


def run():
    return checks.run_checks(tags=["luathrottle"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, []),
        ({"throttling": [SyncThrottle(1, 60)]}, [W001]),
        ({"throttling": [SyncThrottle(1, 60), AsyncThrottle(1, 60)]}, [W001, W001]),
        ({"throttling": [SyncThrottle(1, 60)], "allow_unsafe_cache": False}, [E005]),
        ({"throttling": [SyncThrottle(1, 60)], "allow_unsafe_cache": None}, []),
        ({"throttling": [SyncThrottle(1, 60, backend=SyncDjangoCache("redis"))]}, []),
        (
            {"throttling": [SyncThrottle(1, 60, backend=SyncDjangoCache("gone"))]},
            [E004],
        ),
        ({"throttling": ["5/minute"]}, [E002]),
        ({"throttling": [(SyncThrottle(1, 60), SyncThrottle(2, 60))]}, [E003]),
        ({"throttling": [(SyncThrottle(1, 60), AsyncThrottle(1, 60))]}, [W001]),
        ([SyncThrottle(1, 60)], [E001]),
        ({"throttle": []}, [E001]),
        ({"allow_unsafe_cache": "no"}, [E001]),
        ({"on_failure": "ignore"}, [E001]),
        ({"on_failure": "deny"}, []),
    ],
    ids=[
        "empty",
        "locmem",
        "locmem-twice",
        "locmem-refused",
        "locmem-accepted",
        "redis",
        "unknown-alias",
        "not-a-throttle",
        "bad-pair",
        "good-pair",
        "not-a-dict",
        "unknown-key",
        "bad-policy",
        "bad-failure-policy",
        "failure-policy",
    ],
)
def test_system_check(value, expected):
    with override_settings(LUATHROTTLE=value):
        found = run()
    assert [(m.level, m.id, m.hint) for m in found] == [
        (m.level, m.id, m.hint) for m in expected
    ]


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (
            {"throttling": [SyncThrottle(1, 60), "5/minute"]},
            ["LUATHROTTLE['throttling'][1] is '5/minute'"],
        ),
        (
            {"throttling": [(SyncThrottle(1, 60), SyncThrottle(2, 60))]},
            ["LUATHROTTLE['throttling'][0] is (SyncThrottle(1, 60"],
        ),
        (
            {"throttle": [], "allow_unsafe_cache": "no"},
            [
                "unknown key 'throttle'",
                "LUATHROTTLE['allow_unsafe_cache'] must be True, False or None, "
                "got 'no'",
            ],
        ),
        (
            {"on_failure": "ignore"},
            ["LUATHROTTLE['on_failure']: ", "'ignore'"],
        ),
        (
            {
                "throttling": [
                    SyncThrottle(1, 60, backend=SyncDjangoCache("redis")),
                    (
                        SyncThrottle(1, 60, backend=SyncDjangoCache("redis")),
                        AsyncThrottle(1, 60, backend=AsyncDjangoCache("gone")),
                    ),
                ]
            },
            ["LUATHROTTLE['throttling'][1]: ", "'gone'"],
        ),
        (
            {
                "throttling": [
                    SyncThrottle(1, 60, backend=SyncDjangoCache("redis")),
                    SyncThrottle(1, 60, backend=SyncDjangoCache("dummy")),
                ]
            },
            ["LUATHROTTLE['throttling'][1] stores", "DummyCache"],
        ),
    ],
    ids=[
        "not-a-throttle",
        "bad-pair",
        "bad-keys",
        "bad-failure-policy",
        "unknown-alias",
        "unsafe-cache",
    ],
)
def test_system_check_messages_name_the_entry(value, named):
    """Each message carries the detail that names the bad entry."""
    with override_settings(LUATHROTTLE=value):
        found = run()
    text = " ".join(message.msg for message in found)
    for fragment in named:
        assert fragment in text
    assert all(message.msg.endswith(".") for message in found)
