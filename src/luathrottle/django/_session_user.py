"""The session user of a request in an async view, on every supported Django."""

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest


def _load(user: Any) -> bool:
    return bool(user.is_authenticated)


async def session_user(request: HttpRequest) -> Any | None:
    """The user AuthenticationMiddleware gave ``request``; None without it.

    Django 5 loads it with ``await request.auser()``. Django 4.2 has no
    ``auser``: its lazy ``request.user`` reads the session and the database
    when first touched, so it is touched in a thread, off the event loop.
    """
    auser: Any = getattr(request, "auser", None)
    if auser is not None:
        return await auser()
    user: Any = getattr(request, "user", None)
    if user is not None:
        await sync_to_async(_load)(user)
    return user
