"""Authentication hooks: the stage between the two throttling stages.

A hook says whether the request is authenticated. When no hook of a view
accepts the request, the view answers 401 and its after-auth throttles
never run; its before-auth throttles have already counted the request.
"""

import abc
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

from luathrottle.django._session_user import session_user

__all__ = [
    "BaseAsyncAuth",
    "BaseSyncAuth",
    "DjangoSessionAsyncAuth",
    "DjangoSessionSyncAuth",
]


def _missing_middleware(hook: object) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"{type(hook).__name__} reads the session user, but the request has "
        "none: add django.contrib.auth.middleware.AuthenticationMiddleware to "
        "MIDDLEWARE"
    )


class BaseSyncAuth(abc.ABC):
    """Authentication for sync views."""

    @abc.abstractmethod
    def __call__(self, request: HttpRequest) -> bool:
        """Whether ``request`` is authenticated."""
        raise NotImplementedError(f"{type(self).__name__} must define __call__()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BaseAsyncAuth(abc.ABC):
    """Authentication for async views."""

    @abc.abstractmethod
    async def __call__(self, request: HttpRequest) -> bool:
        """Whether ``request`` is authenticated."""
        raise NotImplementedError(f"{type(self).__name__} must define __call__()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class DjangoSessionSyncAuth(BaseSyncAuth):
    """Accepts requests whose session holds an authenticated user."""

    def __call__(self, request: HttpRequest) -> bool:
        """Whether ``request.user`` is authenticated.

        Raises:
            ImproperlyConfigured: AuthenticationMiddleware is not installed.
        """
        user: Any = getattr(request, "user", None)
        if user is None:
            raise _missing_middleware(self)
        return bool(user.is_authenticated)


class DjangoSessionAsyncAuth(BaseAsyncAuth):
    """Accepts requests whose session holds an authenticated user."""

    async def __call__(self, request: HttpRequest) -> bool:
        """Whether ``await request.auser()`` is authenticated.

        Raises:
            ImproperlyConfigured: AuthenticationMiddleware is not installed.
        """
        user = await session_user(request)
        if user is None:
            raise _missing_middleware(self)
        return bool(user.is_authenticated)
