"""The errors aifetch raises, drawn once.

    AifetchError
    ├── HTTPError                     a response arrived, its status is not 2xx
    │   ├── BadRequestError           400
    │   ├── AuthenticationError       401
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404
    │   ├── ConflictError             409
    │   ├── UnprocessableEntityError  422
    │   ├── RateLimitError            429
    │   └── InternalServerError       5xx
    ├── NetworkError                  (also ConnectionError) the connection failed or broke
    ├── TimeoutError                  (also builtins.TimeoutError) .phase says which timeout
    ├── AbortError                    an AbortSignal fired; .reason is what abort() was given
    ├── RedirectError                 redirect="error" met a redirect, or too many hops
    ├── InvalidURLError               (also ValueError) a URL aifetch will not send
    ├── BodyUsedError                 (also TypeError) a one-shot body was read twice
    ├── BodyTooLargeError             (also ValueError) a bounded read exceeded its limit
    ├── ContentTypeError              a stream was asked of a response that is not one
    ├── SSEError                      (also ValueError) the event stream broke its own rules
    │   └── EventTooLargeError        one event outgrew the decoder's buffer bound
    ├── StreamError                   an {"error": ...} payload arrived inside a stream
    ├── IncompleteStreamError         the stream ended before its terminator ([DONE])
    ├── InvalidChunkError             (also ValueError) a stream event is not the expected JSON
    └── ToolCallArgumentsError        (also ValueError) a tool call's arguments are not JSON

Every message is built from redacted parts: no API key, ``Authorization`` value or
``?key=`` query value ever appears in ``str()`` or ``repr()`` of these errors.
"""

from __future__ import annotations

import builtins
import json
from typing import TYPE_CHECKING, Any

from ._redact import redact_text, request_secrets

if TYPE_CHECKING:
    from ._provider_error import ProviderError
    from ._request import Request

__all__ = [
    "AbortError",
    "AifetchError",
    "AuthenticationError",
    "BadRequestError",
    "BodyTooLargeError",
    "BodyUsedError",
    "ConflictError",
    "ContentTypeError",
    "EventTooLargeError",
    "HTTPError",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidChunkError",
    "InvalidURLError",
    "NetworkError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedirectError",
    "SSEError",
    "StreamError",
    "TimeoutError",
    "ToolCallArgumentsError",
    "UnprocessableEntityError",
    "error_class_for_status",
]


class AifetchError(Exception):
    """Base of every error aifetch raises on purpose."""


class _ProviderFields:
    """The provider's own description of an error, shared by HTTP and stream errors."""

    message: str | None
    type: str | None
    code: str | None
    param: str | None
    body: Any

    def _set_provider(self, provider: ProviderError | None, body: Any) -> None:
        self.body = body
        self.message = provider.message if provider else None
        self.type = provider.type if provider else None
        self.code = provider.code if provider else None
        self.param = provider.param if provider else None

    def _detail(self) -> str:
        text = self.message or ""
        extras = [f"{k}={v}" for k, v in (("type", self.type), ("code", self.code)) if v]
        if self.param:
            extras.append(f"param={self.param}")
        if extras:
            text = f"{text} ({', '.join(extras)})" if text else ", ".join(extras)
        return text


class HTTPError(_ProviderFields, AifetchError):
    """A response arrived and its status is not 2xx.

    ``str(err)`` reads like ``429 Too Many Requests: POST https://host/v1/chat/completions
    — Rate limit reached (code=rate_limit_exceeded)``.
    """

    status: int
    request: Request | None
    response: Any
    request_id: str | None
    retry_after: float | None

    def __init__(
        self,
        *,
        status: int,
        status_text: str,
        method: str,
        url: str,
        request: Request | None = None,
        response: Any = None,
        body: Any = None,
        provider: ProviderError | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        note: str | None = None,
    ) -> None:
        self.status = status
        self.status_text = status_text
        self.request = request
        self.response = response
        self.request_id = request_id
        self.retry_after = retry_after
        self._set_provider(provider, body)
        if request is not None and self.message:
            # Some providers quote the key they were sent in their error message.
            secrets = request_secrets(request.headers.items(), request.url)
            self.message = redact_text(self.message, secrets)
        # The URL is redacted by the caller (it owns the redaction rules); keep it as given.
        text = f"{status} {status_text}: {method} {url}"
        detail = self._detail()
        if detail:
            text = f"{text} — {detail}"
        if note:
            text = f"{text} [{note}]"
        super().__init__(text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class BadRequestError(HTTPError):
    """400 Bad Request."""


class AuthenticationError(HTTPError):
    """401 Unauthorized."""


class PermissionDeniedError(HTTPError):
    """403 Forbidden."""


class NotFoundError(HTTPError):
    """404 Not Found."""


class ConflictError(HTTPError):
    """409 Conflict."""


class UnprocessableEntityError(HTTPError):
    """422 Unprocessable Content."""


class RateLimitError(HTTPError):
    """429 Too Many Requests; ``retry_after`` holds the server's requested wait in seconds."""


class InternalServerError(HTTPError):
    """Any 5xx status."""


_BY_STATUS: dict[int, type[HTTPError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_class_for_status(status: int) -> type[HTTPError]:
    """The most specific HTTPError subclass for ``status``."""
    if status >= 500:
        return InternalServerError
    return _BY_STATUS.get(status, HTTPError)


class NetworkError(AifetchError, ConnectionError):
    """The connection could not be made, or broke before the response was complete.

    ``phase`` is ``"connect"`` when nothing was sent (always safe to retry), ``"send"``
    when it broke before the response headers, ``"body"`` when it broke while reading.
    """

    def __init__(self, message: str, *, phase: str = "send") -> None:
        super().__init__(message)
        self.phase = phase


class TimeoutError(AifetchError, builtins.TimeoutError):
    """A phase of the request took too long.

    ``phase`` is one of ``"connect"``, ``"first_byte"`` (waiting for response headers),
    ``"idle"`` (the gap between two body reads) or ``"total"`` (the whole call, retries included).
    """

    def __init__(self, message: str, *, phase: str) -> None:
        super().__init__(message)
        self.phase = phase


class AbortError(AifetchError):
    """The request's AbortSignal fired; ``reason`` is what ``abort()`` was given."""

    def __init__(self, message: str = "the request was aborted", *, reason: Any = None) -> None:
        super().__init__(message)
        self.reason = reason


class RedirectError(AifetchError):
    """``redirect="error"`` met a redirect, or a redirect chain was too long or unusable."""


class InvalidURLError(AifetchError, ValueError):
    """A URL aifetch refuses to send (bad scheme, credentials inside it, unparsable)."""


class BodyUsedError(AifetchError, TypeError):
    """A one-shot body was read a second time (fetch raises TypeError for the same)."""


class BodyTooLargeError(AifetchError, ValueError):
    """A bounded read went past its limit."""


class ContentTypeError(AifetchError):
    """An event stream was asked of a response whose Content-Type is not text/event-stream."""


class SSEError(AifetchError, ValueError):
    """The event stream broke a rule the decoder enforces."""


class EventTooLargeError(SSEError):
    """One event (its buffered lines) outgrew the decoder's ``max_event_size``."""


class StreamError(_ProviderFields, AifetchError):
    """An ``{"error": {...}}`` payload arrived inside an event stream."""

    def __init__(self, *, provider: ProviderError | None, body: Any = None) -> None:
        self._set_provider(provider, body)
        super().__init__(f"error event in stream — {self._detail() or 'no details given'}")


class IncompleteStreamError(AifetchError):
    """The stream ended without its terminator: what arrived must not be taken as complete."""


class InvalidChunkError(AifetchError, ValueError):
    """A stream event's data is neither ``[DONE]``, an error, nor a chat.completion.chunk."""


class ToolCallArgumentsError(AifetchError, ValueError):
    """A tool call's ``arguments`` are not valid JSON.

    ``tool_call`` is the call, ``position`` its place in the message's ``tool_calls`` list;
    the ``json.JSONDecodeError`` is chained as ``__cause__``.
    """

    def __init__(self, tool_call: Any, position: int, cause: json.JSONDecodeError) -> None:
        self.tool_call = tool_call
        self.position = position
        name = tool_call.function.name or "?"
        ident = f" (id {tool_call.id})" if tool_call.id else ""
        super().__init__(
            f"tool call #{position} {name!r}{ident} has arguments that are not valid JSON: "
            f"{cause.msg} at character {cause.pos}"
        )
