"""``/admin/keys`` and ``/admin/keys/<name>``: the admin API for virtual keys
(``governance.AdminApi``) on the gateway's route table, only when ``admin.key`` is set.

The admin key is checked before a byte of the body is read, and a body is read under
``MAX_ADMIN_BODY``. Answers and errors are the API's own (OpenAI-shaped); what goes wrong
here (a body too large, the caller gone) is raised to the ASGI edge, which answers in the
same shape.
"""

from __future__ import annotations

from . import _codes as codes
from ._context import RequestContext
from ._respond import send_whole
from .governance import AdminApi
from .governance._admin import MAX_ADMIN_BODY

__all__ = ["ADMIN_PREFIX", "AdminRoute"]

ADMIN_PREFIX = "/admin/keys"


class AdminRoute:
    def __init__(self, api: AdminApi) -> None:
        self.api = api

    async def __call__(self, ctx: RequestContext) -> None:
        self.api.authorize(ctx.headers)
        body = await _read(ctx) if ctx.method == "POST" else b""
        status, headers, answer = await self.api.handle(ctx.method, ctx.path, ctx.headers, body)
        await send_whole(ctx, status, answer, list(headers))


async def _read(ctx: RequestContext) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await ctx.receive()
        if message["type"] == "http.disconnect":
            raise codes.CLIENT_CLOSED("the caller closed the connection")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_ADMIN_BODY:
            raise codes.REQUEST_TOO_LARGE(
                f"The request body is larger than {MAX_ADMIN_BODY} bytes."
            )
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)
