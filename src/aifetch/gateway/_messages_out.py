"""The dialect-out stage of the ``/v1/messages`` routes: whatever the later stages answer in
OpenAI's wire format reaches the caller in Anthropic's.

It is the outermost stage of its routes and wraps ``ctx.send``, as Starlette middleware
wraps ``send``: the stages inside it, and the app's edge that turns any error into an
answer, write OpenAI bytes as they would on any route, and this wrapper rewrites them on
the way out, never holding a stream:

* a stream (``text/event-stream``, 2xx) goes through ``MessagesStreamTranslator`` as it is
  written: ``message_start`` first, blocks opened and stopped in order, ``message_delta``
  with the stop reason and usage, ``message_stop`` last; the gateway's error event after
  the commit point (a failure, a cut, shutdown) becomes an Anthropic ``error`` event, never
  a ``message_stop``; heartbeat comments pass as they are;
* a whole ``chat.completion`` becomes a Message (``chat_completion_to_message``), named by
  the model the caller asked for;
* every error (the gate's 401, a 404 model, an upstream's error passed on, the gateway's
  own) becomes ``{"type": "error", "error": {"type", "message"}}`` with its status.

An answer already in Anthropic's format (``ctx.wire``: a call relayed byte-exact to an
anthropic upstream) passes unchanged, errors excepted, which are reshaped all the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, MutableMapping
from typing import Any

import msgspec

from aifetch.providers import (
    MessagesStreamTranslator,
    chat_completion_to_message,
    openai_error_to_anthropic,
)
from aifetch.sse import SSEDecoder

from ._context import Handler, RequestContext, Send
from ._downstream import PING

__all__ = ["AnthropicAnswer", "MessagesOut"]

_enc = msgspec.json.Encoder().encode
_WAITING, _STREAM, _WHOLE = 0, 1, 2
_HEADERS_REPLACED = frozenset({b"content-length", b"content-type"})


class MessagesOut:
    next: Handler

    def __call__(self, ctx: RequestContext) -> Awaitable[None]:
        ctx.dialect = "anthropic"
        ctx.send = AnthropicAnswer(ctx, ctx.send)
        return self.next(ctx)


class AnthropicAnswer:
    """``send`` for one request, answering in Anthropic's wire format (module docstring)."""

    __slots__ = ("_ctx", "_decoder", "_mode", "_parts", "_send", "_start", "_translator")

    def __init__(self, ctx: RequestContext, send: Send) -> None:
        self._ctx = ctx
        self._send = send
        self._mode = _WAITING
        self._start: MutableMapping[str, Any] = {}
        self._parts: list[bytes] = []
        self._decoder: SSEDecoder | None = None
        self._translator: MessagesStreamTranslator | None = None

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            status = message["status"]
            if 200 <= status < 300 and _is_event_stream(message["headers"]):
                self._mode = _STREAM
                await self._send(message)
            else:
                self._mode, self._start = _WHOLE, message
            return
        if kind != "http.response.body":
            await self._send(message)
            return
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self._mode == _STREAM:
            out = self._stream(body, more)
            if out or not more:
                await self._send({"type": "http.response.body", "body": out, "more_body": more})
            return
        self._parts.append(body)
        if not more:
            await self._whole()

    def _stream(self, body: bytes, more: bool) -> bytes:
        if body == PING or self._ctx.wire == "anthropic":
            return body  # a heartbeat, or bytes already in the caller's format
        translator = self._translator
        if translator is None:
            translator = self._translator = MessagesStreamTranslator(model=self._ctx.model or "")
            self._decoder = SSEDecoder()
        assert self._decoder is not None
        feed = translator.feed
        out = b"".join([feed(event) for event in self._decoder.feed(body)])
        return out if more else out + translator.close()

    async def _whole(self) -> None:
        start = self._start
        status: int = start["status"]
        body = b"".join(self._parts)
        if not 200 <= status < 300:
            status, body = openai_error_to_anthropic(status, body)
        elif self._ctx.wire != "anthropic":
            try:
                body, _ = chat_completion_to_message(body, model=self._ctx.model or "")
            except (ValueError, RecursionError):
                status = 502
                error = {"type": "api_error", "message": "the upstream's answer is not a chat "
                         "completion the gateway can read"}  # fmt: skip
                body = _enc({"type": "error", "error": error})
        headers = [h for h in start["headers"] if h[0] not in _HEADERS_REPLACED]
        headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", b"%d" % len(body)))
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})


def _is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.startswith(b"text/event-stream")
    return False
