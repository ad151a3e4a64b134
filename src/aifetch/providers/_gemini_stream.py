"""Gemini ``streamGenerateContent?alt=sse`` → OpenAI ``chat.completion.chunk`` stream.

Each event is a whole ``GenerateContentResponse`` holding the next parts of candidate 0:

====================================  ==================================================
Gemini                                OpenAI output
====================================  ==================================================
first event                           the role chunk (``id`` = ``responseId``, ``model`` =
                                      ``modelVersion``)
text part                             ``content``
text part with ``thought: true``      ``reasoning_content``
``functionCall`` part                 one ``tool_calls`` chunk: index, id (made stable
                                      when Gemini gives none), name and all the arguments
                                      (Gemini sends a call whole)
first ``thoughtSignature``            ``reasoning_signature``, before its part's delta
``finishReason``                      the finish chunk (``finish_reason`` mapped)
``promptFeedback.blockReason``        the finish chunk, ``content_filter``
``usageMetadata``                     kept; the last one is the usage chunk
``{"error": {...}}``                  ``event: error`` + OpenAI error; nothing after
====================================  ==================================================

The usage chunk and ``[DONE]`` are owed at the clean end of the stream (``close()``), not
at the ``finishReason`` event, since Gemini may still send usage after it; and they are
owed only if a ``finishReason`` (or a blocked prompt) came, so a cut stream has no
``[DONE]``.
"""

from __future__ import annotations

import time

import msgspec

from .._provider_error import ProviderError
from .._sse import ServerSentEvent
from ._chunks import DONE, ChunkWriter, openai_error_event
from ._errors import gemini_type
from ._gemini_wire import Candidate, GeminiResponse, finish_reason, tool_call_id, usage_of
from ._types import ProviderUsage

__all__ = ["GeminiStreamTranslator"]

_decode = msgspec.json.Decoder(GeminiResponse).decode


class GeminiStreamTranslator:
    """One stream's translation; the options are ``AnthropicStreamTranslator``'s."""

    __slots__ = (
        "_created",
        "_finished",
        "_include_usage",
        "_model",
        "_response_id",
        "_signed",
        "_stopped",
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
        self._response_id = ""
        self._tools = 0
        self._signed = False  # a thoughtSignature was passed on
        self._stopped = False  # the finish chunk was sent: [DONE] is owed at the end
        self._finished = False
        self.usage: ProviderUsage | None = None
        self.done = False
        self.error: ProviderError | None = None
        self.content_started = False

    def feed(self, event: ServerSentEvent) -> bytes:
        if self._finished:
            return b""
        try:
            response = _decode(event.data)
        except (msgspec.DecodeError, RecursionError):
            return self._fail(
                "the upstream sent an event that is not a Gemini response",
                "upstream_error",
                "invalid_upstream_event",
            )
        if response.error is not None:
            error = response.error
            kind, code = gemini_type(error.status, error.code)
            return self._fail(error.message or "the upstream stream failed", kind, code)
        out = []
        writer = self._writer
        if writer is None:
            writer = self._start(response)
            out.append(writer.role())
        if response.usage_metadata is not None:
            self.usage = usage_of(response.usage_metadata)
        if response.candidates:
            self._candidate(response.candidates[0], writer, out)
        elif response.prompt_feedback is not None and response.prompt_feedback.block_reason:
            self._finish(writer, "content_filter", out)
        return b"".join(out)

    def close(self) -> bytes:
        """The usage chunk and ``[DONE]`` if the answer finished; nothing if it was cut."""
        if self._finished:
            return b""
        self._finished = True
        if not self._stopped or self._writer is None:
            return b""
        self.done = True
        if self._include_usage and self.usage is not None:
            return self._writer.usage(self.usage) + DONE
        return DONE

    def _start(self, response: GeminiResponse) -> ChunkWriter:
        self._response_id = response.response_id
        created = int(time.time()) if self._created is None else self._created
        model = response.model_version or self._model
        self._writer = ChunkWriter(response.response_id, model, created)
        return self._writer

    def _candidate(self, candidate: Candidate, writer: ChunkWriter, out: list[bytes]) -> None:
        if self._stopped:
            return  # parts after the finish chunk would follow it; usage is all that counts
        for part in candidate.content.parts if candidate.content is not None else ():
            if part.thought_signature and not self._signed:
                self._signed = True
                out.append(writer.signature(part.thought_signature))
            call = part.function_call
            if call is not None:
                self.content_started = True
                call_id = tool_call_id(call, self._response_id, self._tools)
                arguments = bytes(call.args).decode()
                out.append(writer.tool_start(self._tools, call_id, call.name, arguments))
                self._tools += 1
            elif part.text:
                self.content_started = True
                if part.thought:
                    out.append(writer.reasoning(part.text))
                else:
                    out.append(writer.content(part.text))
        if candidate.finish_reason:
            self._finish(writer, finish_reason(candidate.finish_reason, self._tools > 0), out)

    def _finish(self, writer: ChunkWriter, reason: str, out: list[bytes]) -> None:
        if not self._stopped:
            self._stopped = True
            out.append(writer.finish(reason))

    def _fail(self, message: str, kind: str, code: str | None) -> bytes:
        self._finished = True
        self.error = ProviderError(message=message, type=kind, code=code)
        return openai_error_event(message, kind, code)
