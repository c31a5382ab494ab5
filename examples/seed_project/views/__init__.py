"""The seed's examples, one module per section of the throttling chapter.

Each example keeps the seed's shape: a ``Controller`` becomes a
``ThrottledView``, ``@modify(throttling=[...])`` and
``@validate(..., throttling=[...])`` become ``@throttle(...)``, and a handler
that returned ``'inside'`` returns it as JSON, as the seed's serializer did.
"""

from collections.abc import Mapping
from typing import Any

from django.http import HttpResponse, JsonResponse


def to_response(
    raw_data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    """``raw_data`` as compact JSON, ``"inside"`` for ``'inside'``."""
    return JsonResponse(
        raw_data,
        safe=False,
        status=status,
        headers=dict(headers or {}),
        json_dumps_params={"separators": (",", ":")},
    )
