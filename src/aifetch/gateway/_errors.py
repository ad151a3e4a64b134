"""Errors the gateway produces, in OpenAI's wire shape.

Every error body is ``{"error": {"message", "type", "param", "code"}}`` so that any OpenAI
SDK maps it to its own exception class by status (401 → AuthenticationError, 404 →
NotFoundError, 429 → RateLimitError, ...). Messages are built from gateway-side facts only
(upstream *names*, never URLs with credentials, never keys). The codes the gateway itself
raises are listed in ``_codes.py``.
"""

from __future__ import annotations

import msgspec

from aifetch.sse import encode_event

__all__ = ["GatewayError", "error_body", "error_event"]


class _ErrorDetail(msgspec.Struct, omit_defaults=False):
    message: str
    type: str
    param: str | None
    code: str | None


class _ErrorEnvelope(msgspec.Struct):
    error: _ErrorDetail


_encode = msgspec.json.Encoder().encode

# Default ``type`` per status, following the values OpenAI's API itself returns.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def _default_type(status: int) -> str:
    if status >= 500:
        return "upstream_error" if status in (502, 504) else "server_error"
    return _TYPE_BY_STATUS.get(status, "invalid_request_error")


class GatewayError(Exception):
    """An error answered to the caller with ``status`` and an OpenAI-shaped body.

    Raise it from a gateway pipe to reject a call; the gateway turns it into the response
    (or, once a stream has started, into a final SSE ``error`` event).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _default_type(status)
        self.param = param
        self.code = code
        self.headers = headers or []

    def body(self) -> bytes:
        """The JSON body for this error."""
        return error_body(self.message, type=self.type, param=self.param, code=self.code)

    def __repr__(self) -> str:
        return f"GatewayError({self.status}, {self.message!r}, code={self.code!r})"


def error_body(
    message: str,
    *,
    type: str,
    param: str | None = None,
    code: str | None = None,
) -> bytes:
    """``{"error": {...}}`` as bytes."""
    return _encode(_ErrorEnvelope(_ErrorDetail(message, type, param, code)))


def error_event(err: GatewayError) -> bytes:
    """The final SSE event that ends a stream after the commit point.

    ``event: error`` plus an OpenAI error object in ``data``: openai-python raises
    ``APIError`` on it, and no ``data: [DONE]`` follows (docs/ARCHITECTURE.md, the commit
    rule), so a truncated answer never looks complete.
    """
    return encode_event(err.body().decode(), event="error")
