"""OpenAI's Responses API, relayed: ``POST /v1/responses`` and the routes of one response.

``POST /v1/responses`` is a model call like a chat completion (same stages, retries,
fallback, commit rule, disconnect cancel, metrics, access log), relayed byte-exact to
openai-kind upstreams; its stream's rules (which event is content, which completes it,
where usage is) are ``_rules``'s. This module adds what a response's id needs:

* ``ResponseIds``: which upstream made each response, and for which caller (the last
  ``MAX_IDS`` this process saw);
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
from collections import OrderedDict
from collections.abc import Awaitable, Mapping, MutableMapping
from typing import Any, NamedTuple

import msgspec

from aifetch.sse import SSEBlockSplitter, parse_block

from . import _codes as codes
from ._context import Handler, RequestContext, Send
from ._downstream import PING
from ._passthrough import pass_through
from ._upstream import Upstream

__all__ = ["MAX_IDS", "PREFIX", "ResponseById", "ResponseIds", "ResponsesIn", "response_id_of"]

# Response ids remembered per process (an id, its upstream and caller: ~200 bytes each).
MAX_IDS = 65536
PREFIX = "/v1/responses/"
# The actions on one response: their path suffix → the methods each takes.
_ACTIONS = {"": ("GET", "DELETE"), "cancel": ("POST",), "input_items": ("GET",)}
_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")
_MAX_QUERY = 2048


class Made(NamedTuple):
    upstream: str
    caller: str | None  # owner_of the call that made it
    model: str | None


def owner_of(ctx: RequestContext) -> str | None:
    """Whose a response is: the caller's identity where governance knows it (a config
    caller and a virtual key may share a name, never a scope), else the config caller's
    name (several keys of one name are one caller); ``None`` with auth off."""
    who = ctx.identity
    return who.scope if who is not None else ctx.caller_name


class ResponseIds:
    """Response id → where it was made; the least recently used goes first when full."""

    def __init__(self, limit: int = MAX_IDS) -> None:
        self.limit = limit
        self._made: OrderedDict[str, Made] = OrderedDict()

    def __len__(self) -> int:
        return len(self._made)

    def note(self, response_id: str, made: Made) -> None:
        self._made[response_id] = made
        self._made.move_to_end(response_id)
        if len(self._made) > self.limit:
            self._made.popitem(last=False)

    def get(self, response_id: str) -> Made | None:
        made = self._made.get(response_id)
        if made is not None:
            self._made.move_to_end(response_id)
        return made

    def forget(self, response_id: str) -> None:
        self._made.pop(response_id, None)


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
    next: Handler

    def __init__(self, ids: ResponseIds) -> None:
        self.ids = ids

    def __call__(self, ctx: RequestContext) -> Awaitable[None]:
        previous = _previous_id(ctx.body)
        if previous is not None:
            made = self.ids.get(previous)
            if made is not None:
                if made.caller != owner_of(ctx):  # another caller's: not there for this one
                    raise codes.PREVIOUS_RESPONSE_NOT_FOUND(
                        f"Previous response with id '{previous}' not found.",
                        param="previous_response_id",
                    )
                ctx.pin = made.upstream
        ctx.send = _NoteId(ctx, ctx.send, self.ids)
        return self.next(ctx)


def _previous_id(body: bytes) -> str | None:
    if body.find(b'"previous_response_id"') < 0:
        return None
    try:
        found = _previous.decode(body).previous_response_id
    except msgspec.DecodeError:
        return None
    return found if found and _ID.fullmatch(found) else None


class _NoteId:
    """``send`` that notes the id in the first bytes of a 2xx answer."""

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
                self._note(message.get("body", b""))
        return self.send(message)

    def _note(self, body: bytes) -> None:
        if body == PING:
            return  # a heartbeat before the answer: the id comes with the answer
        self.pending = False
        ctx = self.ctx
        found = response_id_of(body) if self.ok and ctx.upstream is not None else None
        if found and _ID.fullmatch(found) and ctx.upstream is not None:
            self.ids.note(found, Made(ctx.upstream, owner_of(ctx), ctx.model))


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
        made = self.ids.get(response_id)
        if made is None or made.caller != owner_of(ctx):
            raise codes.RESPONSE_NOT_FOUND(
                f"No response with id '{response_id}' was made through this gateway for "
                "this key (it remembers the ids of the responses each process made, "
                f"the last {self.ids.limit}).",
            )
        ctx.model = made.model
        upstream = self.upstreams[made.upstream]
        url = f"{upstream.base}/responses/{rest}"
        query: bytes = ctx.scope.get("query_string") or b""
        if ctx.method == "GET" and query and len(query) <= _MAX_QUERY and query.isascii():
            url += "?" + query.decode("ascii")
        await pass_through(ctx, upstream, ctx.method, url, None, upstream.headers)
        if ctx.method == "DELETE" and 200 <= ctx.status < 300:
            self.ids.forget(response_id)
