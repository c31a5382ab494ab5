"""Defining throttling: settings level (``DMR_SETTINGS`` in settings.py).

Not printed by the chapter: controllers with no throttling of their own,
that report the settings' throttle on every response the way the chapter's
"headers on error responses" example does.
"""

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from django.http import HttpResponse
from dmr import Controller, NewCookie
from dmr.plugins.pydantic import PydanticSerializer
from dmr.renderers import Renderer

from luathrottle.dmr import ThrottlingReport


class _Reporting(Controller[PydanticSerializer]):
    def to_response(
        self,
        raw_data: Any,
        *,
        status_code: HTTPStatus | None = None,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, NewCookie] | None = None,
        renderer: Renderer | None = None,
    ) -> HttpResponse:
        response_headers = ThrottlingReport(self).report()
        response_headers.update(headers or {})
        return super().to_response(
            raw_data,
            status_code=status_code,
            headers=response_headers,
            cookies=cookies,
            renderer=renderer,
        )


class SyncController(_Reporting):
    def get(self) -> str:
        return "inside"


class AsyncController(_Reporting):
    async def get(self) -> str:
        return "inside"
