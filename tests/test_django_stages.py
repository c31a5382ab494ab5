"""Stages: before-auth throttles, then auth, then after-auth throttles."""

from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.test import override_settings
from django.urls import path
from django.utils.functional import SimpleLazyObject, empty

from luathrottle.backends.memory import MemoryBackend
from luathrottle.django import (
    AsyncThrottle,
    Rate,
    SyncThrottle,
    ThrottledView,
    throttle,
)
from luathrottle.django.auth import (
    BaseSyncAuth,
    DjangoSessionAsyncAuth,
    DjangoSessionSyncAuth,
)
from luathrottle.django.cache_keys import BaseThrottleCacheKey, RemoteAddr, UserPk

NOT_AUTHENTICATED = b'{"detail":[{"msg":"Not authenticated","type":"security"}]}'


class Refuse(BaseSyncAuth):
    def __call__(self, request):
        return False


class Recorder(BaseThrottleCacheKey):
    """Records what the user looked like when the key ran."""

    def __init__(self, *, runs_before_auth):
        super().__init__(
            runs_before_auth=runs_before_auth, name=f"rec{runs_before_auth}"
        )
        self.seen = []

    def __call__(self, request):
        user = request.user
        self.seen.append(user._wrapped if isinstance(user, SimpleLazyObject) else user)
        return "same"


def lazy_user(evaluations, user):
    def load():
        evaluations.append(1)
        return user

    return SimpleLazyObject(load)


def test_before_auth_throttles_never_touch_the_user(rf, clock):
    memory = MemoryBackend()
    evaluations = []

    @throttle(
        SyncThrottle(5, Rate.minute, backend=memory, clock=clock),
        allow_unsafe_cache=None,
    )
    def view(request):
        return HttpResponse("inside")

    request = rf.get("/")
    request.user = lazy_user(evaluations, SimpleNamespace(is_authenticated=True))
    assert view(request).status_code == 200
    assert evaluations == []
    assert request.user._wrapped is empty


def test_keys_before_auth_see_no_user_and_keys_after_see_it(rf, clock):
    memory = MemoryBackend()
    before = Recorder(runs_before_auth=True)
    after = Recorder(runs_before_auth=False)
    user = SimpleNamespace(is_authenticated=True, pk=7)

    @throttle(
        SyncThrottle(5, Rate.minute, backend=memory, clock=clock, cache_key=before),
        SyncThrottle(5, Rate.minute, backend=memory, clock=clock, cache_key=after),
        auth=[DjangoSessionSyncAuth()],
        allow_unsafe_cache=None,
    )
    def view(request):
        return HttpResponse("inside")

    request = rf.get("/")
    request.user = lazy_user([], user)
    assert view(request).status_code == 200
    assert before.seen == [empty]
    assert after.seen == [user]


def test_requests_failing_auth_count_against_the_before_quota(rf, clock):
    memory = MemoryBackend()

    @throttle(
        SyncThrottle(2, Rate.minute, backend=memory, clock=clock),
        auth=[Refuse()],
        allow_unsafe_cache=None,
    )
    def view(request):
        return HttpResponse("inside")

    responses = [view(rf.get("/")) for _ in range(3)]
    assert [response.status_code for response in responses] == [401, 401, 429]
    assert responses[0].content == NOT_AUTHENTICATED
    assert responses[0]["Content-Type"] == "application/json"


def test_after_auth_throttles_do_not_count_refused_requests(rf, clock):
    memory = MemoryBackend()
    late = RemoteAddr(runs_before_auth=False)

    @throttle(
        SyncThrottle(1, Rate.minute, backend=memory, clock=clock, cache_key=late),
        auth=[Refuse()],
        allow_unsafe_cache=None,
    )
    def view(request):
        return HttpResponse("inside")

    assert [view(rf.get("/")).status_code for _ in range(3)] == [401] * 3


def test_user_pk_counts_per_user_and_skips_anonymous_and_staff(rf, clock):
    memory = MemoryBackend()

    @throttle(
        SyncThrottle(1, Rate.minute, backend=memory, clock=clock, cache_key=UserPk()),
        allow_unsafe_cache=None,
    )
    def view(request):
        return HttpResponse("inside")

    def call(**user):
        request = rf.get("/")
        fields = {"is_authenticated": True, "is_superuser": False, "is_staff": False}
        request.user = SimpleNamespace(**{**fields, **user})
        return view(request).status_code

    assert [call(pk=1), call(pk=1), call(pk=2)] == [200, 429, 200]
    assert [call(pk=3, is_staff=True) for _ in range(2)] == [200, 200]
    anonymous = rf.get("/")
    anonymous.user = SimpleNamespace(is_authenticated=False, pk=None)
    assert [view(anonymous).status_code for _ in range(2)] == [200, 200]


def session_urls():
    memory = MemoryBackend()

    class SyncSession(ThrottledView):
        throttling = (
            SyncThrottle(3, Rate.minute, backend=memory),
            SyncThrottle(1, Rate.minute, backend=memory, cache_key=UserPk()),
        )
        throttling_allow_unsafe_cache = None
        auth = (DjangoSessionSyncAuth(),)

        def get(self, request):
            return HttpResponse(f"hello {request.user.username}")

    class AsyncSession(ThrottledView):
        throttling = (
            AsyncThrottle(3, Rate.minute, backend=memory),
            AsyncThrottle(1, Rate.minute, backend=memory, cache_key=UserPk()),
        )
        throttling_allow_unsafe_cache = None
        auth = (DjangoSessionAsyncAuth(),)

        async def get(self, request):
            # The after-auth stage has loaded request.user, on Django 4.2
            # (which has no request.auser) as on 5.
            return HttpResponse(f"hello {request.user.username}")

    return [
        path("sync/", SyncSession.as_view()),
        path("async/", AsyncSession.as_view()),
    ]


urlpatterns = session_urls()


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_session_auth_end_to_end_sync(client):
    assert client.get("/sync/").content == NOT_AUTHENTICATED
    client.force_login(User.objects.create_user("ada"))
    first = client.get("/sync/")
    assert (first.status_code, first.content) == (200, b"hello ada")
    assert client.get("/sync/").status_code == 429
    assert client.get("/sync/").status_code == 429


@pytest.mark.django_db(transaction=True)
@override_settings(ROOT_URLCONF=__name__)
async def test_session_auth_end_to_end_async(async_client):
    assert (await async_client.get("/async/")).status_code == 401
    user = await User.objects.acreate(username="grace")
    # Django 4.2's AsyncClient has no aforce_login.
    await sync_to_async(async_client.force_login)(user)
    first = await async_client.get("/async/")
    assert (first.status_code, first.content) == (200, b"hello grace")
    assert (await async_client.get("/async/")).status_code == 429
