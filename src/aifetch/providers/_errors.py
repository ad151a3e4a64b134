"""Error bodies from one dialect's shape to another's, status kept.

* Anthropic ``{"type": "error", "error": {"type", "message"}}`` → OpenAI
  ``{"error": {"message", "type", "param", "code"}}`` (table ``_ANTHROPIC``; 529
  ``overloaded_error`` stays 529 and is retryable).
* Gemini ``{"error": {"code", "message", "status"}}`` → OpenAI (table ``_GOOGLE``).
* OpenAI → Anthropic, for a ``/v1/messages`` caller (table ``_TO_ANTHROPIC``).

A body that is not the expected JSON keeps its status, and its text (whitespace collapsed,
first 500 characters) becomes the message, so nothing the caller could act on is lost.
Messages are the provider's own; callers that hold a key scrub it from the result (a
provider should never echo one, but the gateway and the pipes do not rely on that).
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "RETRYABLE_STATUSES",
    "anthropic_error_to_openai",
    "anthropic_stream_error",
    "gemini_error_to_openai",
    "gemini_type",
    "openai_error_body",
    "openai_error_to_anthropic",
    "openai_type_for_anthropic",
]

_enc = msgspec.json.Encoder().encode
_TEXT_CHARS = 500

# Statuses worth another attempt: OpenAI's set plus Anthropic's 529 (overloaded).
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})

# Anthropic error type → (OpenAI type, OpenAI code). Anthropic documents these types and
# their statuses in "Errors" (400, 401, 403, 404, 413, 429, 500, 529).
_ANTHROPIC: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("authentication_error", "invalid_api_key"),
    "permission_error": ("permission_error", None),
    "not_found_error": ("not_found_error", None),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit_error": ("rate_limit_error", "rate_limit_exceeded"),
    "api_error": ("server_error", None),
    "overloaded_error": ("overloaded_error", "overloaded"),
}

# google.rpc.Code names (Gemini's "status") → (OpenAI type, OpenAI code).
_GOOGLE: dict[str, tuple[str, str | None]] = {
    "INVALID_ARGUMENT": ("invalid_request_error", None),
    "FAILED_PRECONDITION": ("invalid_request_error", "failed_precondition"),
    "OUT_OF_RANGE": ("invalid_request_error", None),
    "UNAUTHENTICATED": ("authentication_error", "invalid_api_key"),
    "PERMISSION_DENIED": ("permission_error", None),
    "NOT_FOUND": ("not_found_error", None),
    "RESOURCE_EXHAUSTED": ("rate_limit_error", "rate_limit_exceeded"),
    "CANCELLED": ("server_error", None),
    "INTERNAL": ("server_error", None),
    "UNAVAILABLE": ("server_error", "unavailable"),
    "DEADLINE_EXCEEDED": ("server_error", "timeout"),
}

# OpenAI status → Anthropic error type, for answers to a /v1/messages caller.
_TO_ANTHROPIC = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _status_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def _text(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())[:_TEXT_CHARS]
    return text or "the upstream answered with an empty error body"


def _object(body: bytes) -> dict[str, Any] | None:
    try:
        value = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    if isinstance(value, list) and value:  # Google sometimes wraps the error in a list
        value = value[0]
    return value if isinstance(value, dict) else None


def openai_error_body(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> bytes:
    return _enc({"error": {"message": message, "type": type, "param": param, "code": code}})


def openai_type_for_anthropic(kind: str) -> tuple[str, str | None]:
    """(OpenAI type, code) for an Anthropic error type; unknown types are kept as they are."""
    return _ANTHROPIC.get(kind, (kind or "server_error", None))


def anthropic_error_to_openai(status: int, body: bytes) -> tuple[int, bytes]:
    """An Anthropic error response → (the same status, an OpenAI error body)."""
    obj = _object(body)
    error = obj.get("error") if obj is not None else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        kind, code = openai_type_for_anthropic(str(error.get("type") or ""))
        return status, openai_error_body(error["message"], kind, None, code)
    return status, openai_error_body(_text(body), _status_type(status))


def gemini_type(name: str, status: int) -> tuple[str, str | None]:
    """(OpenAI type, code) for a google.rpc.Code name, else by HTTP status."""
    return _GOOGLE.get(name, (_status_type(status), None))


def gemini_error_to_openai(status: int, body: bytes) -> tuple[int, bytes]:
    """A Gemini error response → (the same status, an OpenAI error body)."""
    obj = _object(body)
    error = obj.get("error") if obj is not None else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        kind, code = gemini_type(str(error.get("status") or ""), status)
        return status, openai_error_body(error["message"], kind, None, code)
    return status, openai_error_body(_text(body), _status_type(status))


def openai_error_to_anthropic(status: int, body: bytes) -> tuple[int, bytes]:
    """An OpenAI-shaped error (an upstream's, or the gateway's own) → Anthropic's shape,
    status kept: ``{"type": "error", "error": {"type", "message"}}``."""
    obj = _object(body)
    error = obj.get("error") if obj is not None else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message = error["message"]
    elif isinstance(error, str) and error:
        message = error
    else:
        message = _text(body)
    kind = _TO_ANTHROPIC.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return status, _enc({"type": "error", "error": {"type": kind, "message": message}})


def anthropic_stream_error(message: str, kind: str = "api_error") -> bytes:
    """An Anthropic ``error`` event: what ends a ``/v1/messages`` stream that failed."""
    data = _enc({"type": "error", "error": {"type": kind, "message": message}})
    return b"event: error\ndata: " + data + b"\n\n"
