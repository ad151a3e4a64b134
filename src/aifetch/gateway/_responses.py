"""OpenAI's Responses API, relayed: ``POST /v1/responses`` and the routes of one response.

``POST /v1/responses`` is a model call like a chat completion (same stages, retries,
fallback, commit rule, disconnect cancel, metrics, access log), relayed byte-exact to
openai-kind upstreams; its stream's rules (which event is content, which completes it,
where usage is) are ``_rules``'s. This module adds what a response's id needs, with
``_response_ids`` keeping which upstream made each response, and for which caller:

* ``ResponsesIn``, the stage before the model call: it notes the id of every answer (from
  its first bytes, by wrapping ``ctx.send``), and a call whose ``previous_response_id``
  names a noted response is pinned to the upstream that made it (``ctx.pin``), since no
  other upstream has it;
* ``ResponseById``: ``GET``/``DELETE /v1/responses/{id}``, ``GET .../input_items`` and
  ``POST .../cancel``, relayed to the upstream that made the response, for the caller that
  made it; any other id is a 404 (``response_not_found``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Mapping, MutableMapping
from typing import Any

import msgspec

from aifetch.sse import SSEBlockSplitter, parse_block

from . import _codes as codes
from ._context import Handler, RequestContext, Send
from ._downstream import PING
from ._passthrough import pass_through
from ._response_ids import Made, ResponseIds
from ._upstream import Upstream

__all__ = ["PREFIX", "ResponseById", "ResponsesIn", "response_id_of"]

PREFIX = "/v1/responses/"
# The actions on one response: their path suffix → the methods each takes.
_ACTIONS = {"": ("GET", "DELETE"), "cancel": ("POST",), "input_items": ("GET",)}
_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")
_MAX_QUERY = 2048


def owner_of(ctx: RequestContext) -> str | None:
    """Whose a response is: the caller's identity where governance knows it (a config
    caller and a virtual key may share a name, never a scope), else the config caller's
    name (several keys of one name are one caller); ``None`` with auth off."""
    who = ctx.identity
    return who.scope if who is not None else ctx.caller_name


class _Id(msgspec.Struct):
    id: str | None = None


class _Answer(msgspec.Struct):
    id: str | None = None  # a whole response
    response: _Id | None = None  # a stream's first event (response.created)


class _Previous(msgspec.Struct):
    previous_response_id: str | None = None


_answer = msgspec.json.Decoder(_Answer)
_previous = msgspec.json.Decoder(_Previous)


def response_id_of(body: bytes) -> str | None:
    """The response id in the first bytes of a 2xx answer: a whole response's ``id``, or
    that of the response in a stream's first event."""
    if not body.lstrip().startswith(b"{"):
        blocks = SSEBlockSplitter().feed(body)
        event = parse_block(blocks[0], stream_start=True) if blocks else None
        if event is None:
            return None
        body = event.data.encode()
    try:
        answer = _answer.decode(body)
    except msgspec.DecodeError:
        return None
    if answer.response is not None:
        return answer.response.id
    return answer.id


class ResponsesIn:
    """With ``tenants`` (several callers, or virtual keys), a ``previous_response_id`` the
    gateway does not know is refused like another caller's: past the gateway every
    caller is the gateway's one upstream key, so the upstream would continue any
    caller's response for whoever names it. With one caller (or none) it goes on, to
    the model's targets in order."""

    next: Handler

    def __init__(self, ids: ResponseIds, *, tenants: bool) -> None:
        self.ids = ids
        self.tenants = tenants

    async def __call__(self, ctx: RequestContext) -> None:
        previous = _previous_id(ctx.body)
        if previous is not None:
            made = await self.ids.find(previous) if _ID.fullmatch(previous) else None
            if made is not None and made.caller == owner_of(ctx):
                ctx.pin = made.upstream
            elif made is not None or self.tenants:
                raise codes.PREVIOUS_RESPONSE_NOT_FOUND(
                    f"Previous response with id '{_shown(previous)}' not found.",
                    param="previous_response_id",
                )
        ctx.send = _NoteId(ctx, ctx.send, self.ids)
        await self.next(ctx)


def _previous_id(body: bytes) -> str | None:
    if body.find(b'"previous_response_id"') < 0:
        return None
    try:
        found = _previous.decode(body).previous_response_id
    except msgspec.DecodeError:
        return None
    return found or None


def _shown(response_id: str) -> str:
    """An id as an error message may repeat it: one a caller made up, cut short."""
    return (
        response_id
        if _ID.fullmatch(response_id)
        else response_id[:40].encode("ascii", "backslashreplace").decode()
    )


class _NoteId:
    """``send`` that keeps the id in the first bytes of a 2xx answer, before they go (the
    caller may come back with it at once, through another process)."""

    __slots__ = ("ctx", "ids", "ok", "pending", "send")

    def __init__(self, ctx: RequestContext, send: Send, ids: ResponseIds) -> None:
        self.ctx, self.send, self.ids = ctx, send, ids
        self.ok = False
        self.pending = True

    def __call__(self, message: MutableMapping[str, Any]) -> Awaitable[None]:
        if self.pending:
            if message["type"] == "http.response.start":
                self.ok = 200 <= message["status"] < 300
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if body != PING:  # a heartbeat before the answer: the id comes with it
                    self.pending = False
                    return self._keep_then_send(body, message)
        return self.send(message)

    async def _keep_then_send(self, body: bytes, message: MutableMapping[str, Any]) -> None:
        ctx = self.ctx
        found = response_id_of(body) if self.ok and ctx.upstream is not None else None
        if found and _ID.fullmatch(found) and ctx.upstream is not None:
            await self.ids.keep(found, Made(ctx.upstream, owner_of(ctx), ctx.model))
        await self.send(message)


class ResponseById:
    def __init__(self, ids: ResponseIds, upstreams: Mapping[str, Upstream]) -> None:
        self.ids = ids
        self.upstreams = upstreams

    async def __call__(self, ctx: RequestContext) -> None:
        rest = ctx.path[len(PREFIX) :]
        response_id, _, action = rest.partition("/")
        methods = _ACTIONS.get(action)
        if methods is None or not _ID.fullmatch(response_id):
            raise codes.UNKNOWN_URL(f"Invalid URL ({ctx.method} {ctx.path})")
        if ctx.method not in methods:
            raise codes.METHOD_NOT_ALLOWED(f"Method {ctx.method} is not allowed on {ctx.path}")
        made = await self.ids.find(response_id)
        if made is None or made.caller != owner_of(ctx):
            raise codes.RESPONSE_NOT_FOUND(
                f"No response with id '{response_id}' was made through this gateway for "
                "this key (or it is no longer remembered).",
            )
        ctx.model = made.model
        upstream = self.upstreams[made.upstream]
        url = f"{upstream.base}/responses/{rest}"
        query: bytes = ctx.scope.get("query_string") or b""
        if ctx.method == "GET" and query and len(query) <= _MAX_QUERY and query.isascii():
            url += "?" + query.decode("ascii")
        await pass_through(ctx, upstream, ctx.method, url, None, upstream.headers)
        if ctx.method == "DELETE" and 200 <= ctx.status < 300:
            await self.ids.drop(response_id)
