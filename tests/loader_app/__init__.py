"""A bare ASGI app with one response of each framing, for the benchmark's
loaders: each path counts the requests it served, and ``/count/`` reports
those counts, so a test can hold a loader's figures against the server's."""

import json
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["application"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

BODY = b'"inside"'
served: Counter[str] = Counter()


async def _respond(
    send: Send, status: int, chunks: list[bytes], *, length: bool
) -> None:
    headers = [(b"content-type", b"application/json")]
    if length:
        headers.append((b"content-length", str(sum(map(len, chunks))).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    for index, chunk in enumerate(chunks):
        more = index < len(chunks) - 1
        await send({"type": "http.response.body", "body": chunk, "more_body": more})


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    served[path] += 1
    if path == "/count/":
        await _respond(send, 200, [json.dumps(served).encode()], length=True)
    elif path == "/chunked/":
        # No Content-Length and more than one body message: uvicorn sends
        # Transfer-Encoding: chunked.
        await _respond(send, 200, [BODY[:3], BODY[3:]], length=False)
    elif path == "/denied/":
        await _respond(send, 429, [b'{"detail":"slow down"}'], length=True)
    else:  # /length/ and /health/
        await _respond(send, 200, [BODY], length=True)
