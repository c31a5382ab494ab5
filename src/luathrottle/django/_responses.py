"""The responses a throttled view answers with itself: a refusal from the
answer every door gives (``luathrottle._answers``), or a 401."""

from django.http import HttpResponse

from luathrottle._answers import Answer

__all__ = ["NOT_AUTHENTICATED_BODY", "not_authenticated", "respond"]

NOT_AUTHENTICATED_BODY = b'{"detail":[{"msg":"Not authenticated","type":"security"}]}'


def _json(body: bytes, status: int, headers: dict[str, str]) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type="application/json")
    for name, value in headers.items():
        response[name] = value
    return response


def respond(answer: Answer) -> HttpResponse:
    """``answer`` as a Django response."""
    return _json(answer.body, answer.status, answer.headers)


def not_authenticated() -> HttpResponse:
    return _json(NOT_AUTHENTICATED_BODY, 401, {})
