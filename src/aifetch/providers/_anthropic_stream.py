"""Anthropic Messages stream → OpenAI ``chat.completion.chunk`` stream, as a state machine.

Events in (``aifetch.sse.ServerSentEvent``, as ``SSEDecoder`` gives them), SSE bytes out,
exactly what an OpenAI upstream would have sent (Anthropic API reference, "Streaming
Messages"; OpenAI reference, "The chat completion chunk object"):

==========================================  ==============================================
Anthropic event                             OpenAI output
==========================================  ==============================================
``message_start``                           the role chunk (``id``/``model`` from the message)
``content_block_start`` text/thinking       its initial text, if any
``content_block_start`` tool_use            a ``tool_calls`` chunk: index, id, name
``content_block_delta`` text_delta          ``content``
``content_block_delta`` input_json_delta    ``tool_calls[].function.arguments``, as it comes
``content_block_delta`` thinking_delta      ``reasoning_content``
``content_block_delta`` signature_delta     ``reasoning_signature`` (our extension)
``content_block_stop`` of a tool_use that   ``arguments: "{}"`` (a call with no input)
got no input
``message_delta``                           the finish chunk (``finish_reason`` mapped)
``message_stop``                            the usage chunk (``choices: []``), ``[DONE]``
``ping``                                    ``: ping`` (an SSE comment)
``error``                                   ``event: error`` + OpenAI error; nothing after
==========================================  ==============================================

Server-side blocks (``server_tool_use``, ``web_search_tool_result``, …), ``citations_delta``
and ``redacted_thinking`` have no OpenAI counterpart and produce nothing; event types this
module does not know are skipped, as Anthropic's versioning policy asks of clients. A
stream that ends without ``message_stop`` gets no ``[DONE]`` from ``close()``, so a reader
sees it was cut. Usage adds up ``message_start``'s counts and ``message_delta``'s
cumulative ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

from .._provider_error import ProviderError
from .._sse import ServerSentEvent
from ._anthropic_wire import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ErrorEvent,
    MessageDelta,
    MessageStart,
    Usage,
    finish_reason,
    usage_of,
)
from ._chunks import DONE, PING, ChunkWriter, openai_error_event
from ._errors import openai_type_for_anthropic
from ._types import ProviderUsage

__all__ = ["AnthropicStreamTranslator"]

_TEXT, _THINKING, _TOOL, _OTHER = 0, 1, 2, 3


class _Type(msgspec.Struct):
    type: str = ""


_decode_type = msgspec.json.Decoder(_Type).decode
_decode_start = msgspec.json.Decoder(MessageStart).decode
_decode_block_start = msgspec.json.Decoder(BlockStart).decode
_decode_delta = msgspec.json.Decoder(BlockDelta).decode
_decode_stop = msgspec.json.Decoder(BlockStop).decode
_decode_message_delta = msgspec.json.Decoder(MessageDelta).decode
_decode_error = msgspec.json.Decoder(ErrorEvent).decode


class AnthropicStreamTranslator:
    """One stream's translation. ``model`` names the model when the provider's
    ``message_start`` does not; ``include_usage`` adds the usage chunk before ``[DONE]``
    (the gateway always asks for it); ``created`` defaults to the time of the first event.
    """

    __slots__ = (
        "_blocks",
        "_created",
        "_finished",
        "_handlers",
        "_include_usage",
        "_model",
        "_raw_usage",
        "_stopped",
        "_tool_has_args",
        "_tools",
        "_writer",
        "content_started",
        "done",
        "error",
        "usage",
    )

    def __init__(
        self, *, model: str = "", include_usage: bool = True, created: int | None = None
    ) -> None:
        self._model = model
        self._include_usage = include_usage
        self._created = created
        self._writer: ChunkWriter | None = None
        self._blocks: dict[int, int] = {}  # block index → _TEXT/_THINKING/_TOOL/_OTHER
        self._tools: dict[int, int] = {}  # block index → OpenAI tool call index
        self._tool_has_args: set[int] = set()
        self._raw_usage: Usage | None = None
        self._stopped = False  # the finish chunk was sent
        self._finished = False  # message_stop or error seen: nothing more is produced
        self.usage: ProviderUsage | None = None
        self.done = False
        self.error: ProviderError | None = None
        self.content_started = False
        self._handlers: dict[str, Callable[[str], bytes]] = {
            "content_block_delta": self._block_delta,
            "ping": self._ping,
            "content_block_start": self._block_start,
            "content_block_stop": self._block_stop,
            "message_start": self._message_start,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }

    def feed(self, event: ServerSentEvent) -> bytes:
        if self._finished:
            return b""
        name = event.event
        try:
            if name == "content_block_delta":  # most events: straight to its handler
                return self._block_delta(event.data)
            if name == "message":  # no "event:" line (some proxies drop it): read the type
                name = _decode_type(event.data).type
            handler = self._handlers.get(name)
            return b"" if handler is None else handler(event.data)
        except (msgspec.DecodeError, RecursionError):
            return self._fail(
                "the upstream sent an event that is not valid Anthropic JSON",
                "upstream_error",
                "invalid_upstream_event",
            )

    def close(self) -> bytes:
        """Nothing is owed at the end: ``[DONE]`` went out with ``message_stop``, and a
        stream that never sent it stays without one."""
        self._finished = True
        return b""

    # --- events ----------------------------------------------------------------------

    def _start(self, message_id: str, model: str) -> ChunkWriter:
        created = int(time.time()) if self._created is None else self._created
        self._writer = ChunkWriter(message_id, model or self._model, created)
        return self._writer

    def _message_start(self, data: str) -> bytes:
        if self._writer is not None:
            return b""  # a repeated message_start adds nothing
        message = _decode_start(data).message
        if message.usage is not None:
            self._set_usage(message.usage)
        return self._start(message.id, message.model).role()

    def _ensure(self) -> tuple[ChunkWriter, bytes]:
        """The writer; a stream that skipped ``message_start`` gets its role chunk now."""
        if self._writer is not None:
            return self._writer, b""
        writer = self._start("", "")
        return writer, writer.role()

    def _block_start(self, data: str) -> bytes:
        start = _decode_block_start(data)
        block = start.content_block
        writer, out = self._ensure()
        kind = block.type
        if kind == "text":
            self._blocks[start.index] = _TEXT
            if block.text:
                self.content_started = True
                out += writer.content(block.text)
        elif kind == "thinking":
            self._blocks[start.index] = _THINKING
            if block.thinking:
                self.content_started = True
                out += writer.reasoning(block.thinking)
            if block.signature:
                out += writer.signature(block.signature)
        elif kind == "tool_use":
            self._blocks[start.index] = _TOOL
            tool = self._tools[start.index] = len(self._tools)
            arguments = bytes(block.input)
            if arguments.strip() in (b"", b"{}"):
                arguments = b""
            else:
                self._tool_has_args.add(start.index)
            self.content_started = True
            out += writer.tool_start(tool, block.id, block.name, arguments.decode())
        else:
            self._blocks[start.index] = _OTHER
        return out

    def _block_delta(self, data: str) -> bytes:
        event = _decode_delta(data)
        delta = event.delta
        kind = delta.type
        writer = self._writer
        if kind == "text_delta" and writer is not None:
            self.content_started = True
            return writer.content(delta.text)
        prefix = b""
        if writer is None:
            writer, prefix = self._ensure()
        if kind == "text_delta":
            self.content_started = True
            return prefix + writer.content(delta.text)
        if kind == "input_json_delta":
            if not delta.partial_json or self._blocks.get(event.index) != _TOOL:
                return prefix  # an empty piece, or a server tool's input
            self._tool_has_args.add(event.index)
            return prefix + writer.tool_arguments(self._tools[event.index], delta.partial_json)
        if kind == "thinking_delta":
            self.content_started = True
            return prefix + writer.reasoning(delta.thinking)
        if kind == "signature_delta":
            return prefix + writer.signature(delta.signature)
        return prefix  # citations_delta and kinds added later

    def _block_stop(self, data: str) -> bytes:
        index = _decode_stop(data).index
        if self._blocks.get(index) != _TOOL or index in self._tool_has_args:
            return b""
        writer, out = self._ensure()
        # A call that takes no input got no input_json_delta: its arguments are "{}".
        self._tool_has_args.add(index)
        return out + writer.tool_arguments(self._tools[index], "{}")

    def _message_delta(self, data: str) -> bytes:
        event = _decode_message_delta(data)
        if event.usage is not None:
            self._set_usage(event.usage)
        if event.delta.stop_reason is None or self._stopped:
            return b""
        self._stopped = True
        writer, out = self._ensure()
        return out + writer.finish(finish_reason(event.delta.stop_reason))

    def _message_stop(self, data: str) -> bytes:
        writer, out = self._ensure()
        self._finished = self.done = True
        if not self._stopped:  # a stream without message_delta still says it finished
            self._stopped = True
            out += writer.finish("stop")
        if self._include_usage and self.usage is not None:
            out += writer.usage(self.usage)
        return out + DONE

    def _ping(self, data: str) -> bytes:
        return PING

    def _error(self, data: str) -> bytes:
        detail = _decode_error(data).error
        kind, code = openai_type_for_anthropic(detail.type)
        return self._fail(detail.message or "the upstream stream failed", kind, code)

    def _fail(self, message: str, kind: str, code: str | None) -> bytes:
        self._finished = True
        self.error = ProviderError(message=message, type=kind, code=code)
        return openai_error_event(message, kind, code)

    def _set_usage(self, usage: Usage) -> None:
        raw = usage if self._raw_usage is None else self._raw_usage.merge(usage)
        self._raw_usage = raw
        self.usage = usage_of(raw)
