"""``ChatStream``: typed ``chat.completion.chunk`` objects from a streaming response.

The logic lives in ``_ChunkParser``, a sans-IO step (bytes in, chunks out). ``ChatStream``
iterates with ``for`` over a sync response and with ``async for`` over an async one; each is
a thin loop that reads the body and feeds the parser, so no rule is written twice.

The end of an OpenAI stream is ``data: [DONE]``. A body that ends without it was cut short,
and is reported as ``IncompleteStreamError`` rather than taken as a complete answer. After
``[DONE]`` the rest of the body (normally nothing) is read and discarded, up to
``max_trailing_bytes``, so that the connection is left at a clean boundary and can be
reused; then the response is closed.
"""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Generator,
    Iterable,
    Iterator,
)
from typing import Any, Protocol, cast

import msgspec

from .._errors import IncompleteStreamError, InvalidChunkError, StreamError
from .._provider_error import parse_error_body, provider_error_from_json
from .._sse import ServerSentEvent, SSEDecoder
from ._accumulator import ChatCompletionAccumulator
from ._types import ChatCompletion, ChatCompletionChunk, ToolCall, decode_chunk

__all__ = [
    "AsyncStreamingResponse",
    "ChatStream",
    "InvalidChunkError",
    "SyncStreamingResponse",
    "TextDeltas",
]

_DONE = "[DONE]"
# Shown in InvalidChunkError messages; enough to recognise the payload, not to flood a log.
_PREVIEW_CHARS = 200


class AsyncStreamingResponse(Protocol):
    """What ``ChatStream`` needs of an async response."""

    @property
    def body(self) -> AsyncIterable[bytes]: ...

    async def aclose(self) -> None: ...


class SyncStreamingResponse(Protocol):
    """What ``ChatStream`` needs of a sync response."""

    @property
    def body(self) -> Iterable[bytes]: ...

    def close(self) -> None: ...


class _ChunkParser:
    """The sans-IO step: body bytes in, typed chunks out, folded into an accumulator.

    ``feed`` is a generator so that the chunks decoded before a bad event reach the caller
    before the error does, in order. ``error`` keeps the exception that ended the stream,
    for ``final()`` to raise again.
    """

    __slots__ = (
        "_decoder",
        "_max_trailing",
        "_trailing",
        "accumulator",
        "count",
        "done",
        "error",
    )

    def __init__(self, max_trailing_bytes: int) -> None:
        # Comments (": keep-alive", ": ping") are dropped by the decoder itself (no
        # on_comment), so they never reach the JSON decoder.
        self._decoder = SSEDecoder()
        self._max_trailing = max_trailing_bytes
        self._trailing = 0
        self.accumulator = ChatCompletionAccumulator()
        self.count = 0
        self.done = False
        self.error: BaseException | None = None

    @property
    def wants_more(self) -> bool:
        """Whether the body should still be read: before [DONE], or draining within bounds."""
        return not self.done or self._trailing <= self._max_trailing

    def feed(self, data: bytes) -> Iterator[ChatCompletionChunk]:
        if self.done:
            self._trailing += len(data)
            return
        for event in self._decoder.feed(data):
            chunk = self._event(event)
            if self.done:
                return  # what follows [DONE] in the same read is trailing, unread
            if chunk is not None:
                yield chunk

    def end(self) -> None:
        """The body ended. Per HTML §9.2.5 an unterminated last event is discarded, so
        only an earlier [DONE] makes the stream complete."""
        self._decoder.close()
        if not self.done:
            raise IncompleteStreamError(f"stream ended after {self.count} chunks without [DONE]")

    def fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc

    def _event(self, event: ServerSentEvent) -> ChatCompletionChunk | None:
        data = event.data
        if event.event != "message":
            if event.event == "error":
                body, provider = parse_error_body(data.encode(), None)
                raise StreamError(provider=provider, body=body)
            return None  # a vendor event (e.g. "ping") that is not part of the chunk stream
        if not data:
            return None  # keep-alive: a "data:" line with nothing in it
        if data == _DONE:
            self.done = True
            return None
        # Cheap screen before the generic decode: an error payload has the key "error". A
        # false hit (a nested "error" key, or a delta whose whole text is "error") costs one
        # extra decode and nothing else.
        if '"error"' in data:
            self._raise_if_error(data)
        try:
            chunk = decode_chunk(data)
        except (msgspec.DecodeError, RecursionError) as exc:
            # RecursionError: msgspec's answer to absurdly deep nesting.
            preview = data[:_PREVIEW_CHARS] + ("…" if len(data) > _PREVIEW_CHARS else "")
            raise InvalidChunkError(
                f"event {self.count + 1} of the stream is not a chat.completion.chunk "
                f"({exc}): {preview!r}"
            ) from exc
        self.count += 1
        self.accumulator.add(chunk)
        return chunk

    @staticmethod
    def _raise_if_error(data: str) -> None:
        try:
            obj: Any = msgspec.json.decode(data)
        except (msgspec.DecodeError, RecursionError):
            return  # not JSON at all: reported as an invalid chunk by the caller
        # Only a top-level "error" counts: Azure nests {"error": ...} inside a choice's
        # content_filter_results when a filter fails, and that chunk is still content.
        if isinstance(obj, dict) and obj.get("error"):
            raise StreamError(provider=provider_error_from_json(obj), body=obj)


class ChatStream:
    """Typed ``ChatCompletionChunk`` objects from a streaming chat completion response.

    Iterate with ``async for`` over an async response and with ``for`` over a sync one; the
    stream can be read once, and iteration picks up where an earlier ``break`` left off::

        async with ChatStream(resp) as stream:      # or: with ChatStream(sync_resp) as ...
            async for chunk in stream:
                ...
            completion = stream.final()

    ``final()`` returns the accumulated ``ChatCompletion``. On a sync stream it first reads
    whatever is left; on an async stream, ``await stream.afinal()`` does that, and
    ``final()`` raises ``RuntimeError`` until the stream is finished. Either raises the
    stream's error (``StreamError``, ``IncompleteStreamError``, a network error...) if it
    failed, so a truncated answer is never returned as complete. ``text_deltas()`` iterates
    only the content text of choice 0; ``tool_calls()`` returns the finished tool calls with
    their arguments decoded.

    Errors: an ``{"error": ...}`` payload or an ``error`` event raises ``StreamError``; a body
    that ends without ``[DONE]`` raises ``IncompleteStreamError``; a payload that is not a
    chunk raises ``InvalidChunkError``. The response is closed when the stream ends, fails,
    or is closed with ``close()``/``aclose()`` (or by leaving the ``with`` block).
    """

    __slots__ = ("_async_gen", "_closed", "_parser", "_response", "_sync_gen", "is_async")

    def __init__(
        self,
        response: AsyncStreamingResponse | SyncStreamingResponse,
        *,
        max_trailing_bytes: int = 1 << 20,
    ) -> None:
        self._response = response
        self._parser = _ChunkParser(max_trailing_bytes)
        body = response.body
        # One marker tells the two response kinds apart: an async body has __aiter__.
        self.is_async = isinstance(body, AsyncIterable)
        self._closed = False
        self._async_gen: AsyncGenerator[ChatCompletionChunk, None] | None = None
        self._sync_gen: Generator[ChatCompletionChunk, None, None] | None = None
        if isinstance(body, AsyncIterable):
            self._async_gen = self._read_async(body)
        else:
            self._sync_gen = self._read_sync(body)

    # --- the two thin I/O loops -----------------------------------------------------------

    async def _read_async(
        self, body: AsyncIterable[bytes]
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        parser = self._parser
        try:
            async for data in body:
                for chunk in parser.feed(data):
                    yield chunk
                if not parser.wants_more:
                    break
            else:
                parser.end()
        except Exception as exc:
            parser.fail(exc)
            raise
        finally:
            self._closed = True
            await self._async_response().aclose()

    def _read_sync(self, body: Iterable[bytes]) -> Generator[ChatCompletionChunk, None, None]:
        parser = self._parser
        try:
            for data in body:
                yield from parser.feed(data)
                if not parser.wants_more:
                    break
            else:
                parser.end()
        except Exception as exc:
            parser.fail(exc)
            raise
        finally:
            self._closed = True
            self._sync_response().close()

    # --- iteration ------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        if self._async_gen is None:
            raise TypeError("this stream reads a sync response: iterate it with 'for'")
        return self._async_gen

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        if self._sync_gen is None:
            raise TypeError("this stream reads an async response: iterate it with 'async for'")
        return self._sync_gen

    def text_deltas(self) -> TextDeltas:
        """The content text of choice 0, piece by piece (``for`` or ``async for``)."""
        return TextDeltas(self)

    # --- results --------------------------------------------------------------------------

    def final(self) -> ChatCompletion:
        """The accumulated completion. A sync stream is read to its end first."""
        if self._sync_gen is not None:
            for _ in self._sync_gen:
                pass
        elif not self._closed:
            raise RuntimeError(
                "the stream is not finished: use 'await stream.afinal()' or read it to the end"
            )
        return self._result()

    async def afinal(self) -> ChatCompletion:
        """Read an async stream to its end, then return the accumulated completion."""
        if self._async_gen is None:
            raise TypeError("this stream reads a sync response: call stream.final()")
        async for _ in self._async_gen:
            pass
        return self._result()

    def tool_calls(self, choice: int = 0) -> list[tuple[ToolCall, Any]]:
        """Choice ``choice``'s tool calls with their ``arguments`` decoded from JSON.

        Same rules as ``final()`` for an unfinished stream; raises ``ToolCallArgumentsError``
        (a ``ValueError``) naming the call whose arguments are not valid JSON.
        """
        self.final()
        return self._parser.accumulator.tool_calls_parsed(choice)

    def _result(self) -> ChatCompletion:
        parser = self._parser
        if parser.error is not None:
            raise parser.error
        if not parser.done:
            raise IncompleteStreamError(
                f"the stream was closed after {parser.count} chunks, before [DONE]"
            )
        return parser.accumulator.final()

    # --- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading a sync stream and close its response."""
        if self._sync_gen is None:
            raise TypeError("this stream reads an async response: use 'await stream.aclose()'")
        self._sync_gen.close()
        if not self._closed:  # a generator never started has no finally to run
            self._closed = True
            self._sync_response().close()

    async def aclose(self) -> None:
        """Stop reading an async stream and close its response."""
        if self._async_gen is None:
            raise TypeError("this stream reads a sync response: use stream.close()")
        await self._async_gen.aclose()
        if not self._closed:  # a generator never started has no finally to run
            self._closed = True
            await self._async_response().aclose()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # The body's kind, checked once in __init__, decides which of these is called.
    def _async_response(self) -> AsyncStreamingResponse:
        return cast(AsyncStreamingResponse, self._response)

    def _sync_response(self) -> SyncStreamingResponse:
        return cast(SyncStreamingResponse, self._response)


class TextDeltas:
    """The content text of choice 0 of a ``ChatStream``, piece by piece; empty pieces are
    skipped. Iterate with the same kind of loop as the stream itself."""

    __slots__ = ("_stream",)

    def __init__(self, stream: ChatStream) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[str]:
        for chunk in self._stream:
            if text := _first_choice_text(chunk):
                yield text

    async def __aiter__(self) -> AsyncIterator[str]:
        async for chunk in self._stream:
            if text := _first_choice_text(chunk):
                yield text


def _first_choice_text(chunk: ChatCompletionChunk) -> str | None:
    # Matched by index, not position: with n > 1 a chunk may carry only choice 1.
    for choice in chunk.choices:
        if choice.index == 0:
            return choice.delta.content
    return None
