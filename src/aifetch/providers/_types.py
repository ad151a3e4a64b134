"""The values every dialect shares: what a request translates to, the usage a stream
reports, the stream translator's shape, and the one error a translation raises.

Pure: nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from .._errors import AifetchError

if TYPE_CHECKING:
    from .._provider_error import ProviderError
    from .._sse import ServerSentEvent

__all__ = [
    "ProviderOptions",
    "ProviderRequest",
    "ProviderUsage",
    "StreamTranslator",
    "TranslationError",
]

_encode = msgspec.json.Encoder().encode


class ProviderOptions(msgspec.Struct, frozen=True):
    """Per-upstream settings a request translation needs (none of them secret).

    ``anthropic_version`` and ``anthropic_beta`` become the ``anthropic-version`` and
    ``anthropic-beta`` headers. ``max_tokens`` is sent to Anthropic when the caller gives
    neither ``max_tokens`` nor ``max_completion_tokens`` (the Messages API requires one);
    Gemini has no such requirement and leaves the limit to the model when none is given.
    """

    anthropic_version: str = "2023-06-01"
    anthropic_beta: tuple[str, ...] = ()
    max_tokens: int = 4096


class ProviderRequest(msgspec.Struct, frozen=True):
    """What one OpenAI chat request becomes for a provider.

    ``path`` goes under the upstream's base URL (query included, e.g. Gemini's
    ``?alt=sse``); ``headers`` are the request's own headers, never the key (each dialect's
    ``auth_headers(api_key)`` makes those, once per upstream); ``body`` is the JSON to send.
    ``stream`` and ``include_usage`` say what the caller asked for, so the response side
    knows whether to translate a stream and whether to end it with a usage chunk.
    """

    path: str
    headers: list[tuple[str, str]]
    body: bytes
    stream: bool = False
    include_usage: bool = False


class ProviderUsage(msgspec.Struct):
    """Token counts in OpenAI's terms, whichever provider reported them.

    ``prompt_tokens`` counts every input token, cached or not (so Anthropic's
    ``input_tokens`` + cache creation + cache read); ``cached_tokens`` is the part read from
    a cache; ``completion_tokens`` includes ``reasoning_tokens``, as OpenAI counts them.
    ``cache_write_tokens`` (Anthropic's cache creation) is kept for cost accounting; OpenAI's
    usage object has no field for it, so it is not sent on the wire.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> dict[str, Any]:
        """The ``usage`` object of a ``chat.completion`` (and of the final stream chunk)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


class StreamTranslator(Protocol):
    """A stream translation, one per stream: events of one wire format in, complete SSE
    blocks of another out. Every dialect's translator, in both directions, has this shape.

    ``feed`` takes one decoded event (``aifetch.sse.SSEDecoder`` output) and returns zero or
    more complete SSE blocks, as bytes, ready to send. ``close`` is called once at the
    upstream's clean end of stream and returns what is still owed: the terminator when the
    provider's stream really completed, nothing (or, towards an Anthropic caller, an
    ``error`` event) when it did not. After an error event nothing more is produced.

    ``usage`` is what the stream reported (``None`` until it reported any), ``done`` is true
    once the provider's stream completed (Anthropic's ``message_stop``; for Gemini, whose
    stream ends with its body, at ``close()`` after a ``finishReason``), ``error`` holds the
    provider's error once one arrived, and ``content_started`` turns true with the first
    content, reasoning or tool call delta (the gateway's commit point).
    """

    usage: ProviderUsage | None
    done: bool
    error: ProviderError | None
    content_started: bool

    def feed(self, event: ServerSentEvent) -> bytes: ...

    def close(self) -> bytes: ...


class TranslationError(AifetchError, ValueError):
    """A request a dialect cannot translate: a 400 in OpenAI's error vocabulary.

    ``message`` says what is refused and what to send instead; ``param`` names the field
    (``"n"``, ``"messages[2].content[0].type"``); ``code`` is ``unsupported_parameter``,
    ``unsupported_value`` or ``invalid_value``. The gateway answers it as its own 400; the
    client pipes answer it as a synthetic 400 response, which the client raises as
    ``aifetch.BadRequestError`` with these fields (no request reaches the provider).
    """

    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def openai_body(self) -> bytes:
        """``{"error": {"message", "type", "param", "code"}}``."""
        error = {"message": self.message, "type": self.type, "param": self.param}
        error["code"] = self.code
        return _encode({"error": error})

    def anthropic_body(self) -> bytes:
        """``{"type": "error", "error": {"type", "message"}}``, for a ``/v1/messages`` caller."""
        return _encode({"type": "error", "error": {"type": self.type, "message": self.message}})

    def __repr__(self) -> str:
        return f"TranslationError({self.message!r}, param={self.param!r}, code={self.code!r})"
