"""Reading the provider's own error out of an error response body.

Every AI API wraps its errors a little differently; this module knows the common shapes and
reduces each to one ProviderError (message, type, code, param) that HTTPError and
StreamError carry. Pure: bytes in, values out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import msgspec

__all__ = [
    "REQUEST_ID_HEADERS",
    "ProviderError",
    "parse_error_body",
    "provider_error_from_json",
    "request_id_from",
]


class ProviderError(msgspec.Struct, frozen=True):
    """The error a provider reported, in OpenAI's vocabulary. Any field may be missing."""

    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None


# Request-id headers in the order they are most specific: OpenAI (x-request-id), Anthropic
# (request-id), AWS Bedrock (x-amzn-requestid), and Cloudflare's ray id as a last resort.
REQUEST_ID_HEADERS: Final[tuple[str, ...]] = (
    "x-request-id",
    "request-id",
    "x-amzn-requestid",
    "cf-ray",
)

_TEXT_MESSAGE_CHARS: Final = 500
_MAX_REQUEST_ID_CHARS: Final = 256
_UTF8_BOM: Final = b"\xef\xbb\xbf"
# FastAPI's first loc element names where the field came from, not the field.
_LOC_SOURCES: Final = frozenset({"body", "query", "path", "header", "cookie"})


def _text(value: object) -> str | None:
    """A field value as text: numbers as written (429 → "429"), booleans and structures as
    JSON, empty strings as missing."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        try:
            return str(value)
        except ValueError:  # an int past sys.get_int_max_str_digits(): not a usable code
            return None
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        return str(value)


def _build(message: object, type_: object, code: object, param: object) -> ProviderError | None:
    err = ProviderError(_text(message), _text(type_), _text(code), _text(param))
    if err.message is None and err.type is None and err.code is None and err.param is None:
        return None
    return err


def _from_error_object(err: Mapping[str, Any]) -> ProviderError | None:
    # Google puts the canonical name ("RESOURCE_EXHAUSTED") in "status" and the HTTP status
    # in "code"; Azure puts an int HTTP status in "status", which is not a type name.
    type_ = err.get("type")
    status = err.get("status")
    if type_ is None and isinstance(status, str):
        type_ = status
    return _build(err.get("message"), type_, err.get("code"), err.get("param"))


def _loc_to_param(loc: object) -> str | None:
    """FastAPI ``["body", "messages", 0, "content"]`` → ``"messages[0].content"``."""
    if not isinstance(loc, list) or not loc:
        return None
    parts = loc[1:] if len(loc) > 1 and loc[0] in _LOC_SOURCES else loc
    out = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or None


def _from_fastapi_detail(items: list[Any]) -> ProviderError | None:
    entries = [item for item in items if isinstance(item, dict)]
    msgs = [m for m in (_text(item.get("msg")) for item in entries) if m]
    if not entries:
        return _build("; ".join(t for t in map(_text, items) if t), None, None, None)
    first = entries[0]
    return _build("; ".join(msgs), first.get("type"), None, _loc_to_param(first.get("loc")))


def _from_dict(obj: Mapping[str, Any]) -> ProviderError | None:
    # OpenAI {"error": {...}}, Anthropic {"type": "error", "error": {...}}, Google
    # {"error": {"code": 429, "message", "status"}}, and plain {"error": "text"}.
    err = obj.get("error")
    if isinstance(err, dict):
        found = _from_error_object(err)
        if found is not None:
            return found
    elif isinstance(err, str) and err:
        return _build(err, obj.get("type") if obj.get("type") != "error" else None, None, None)
    if "message" in obj:
        return _build(obj.get("message"), obj.get("type"), obj.get("code"), obj.get("param"))
    detail = obj.get("detail")
    if isinstance(detail, list):
        return _from_fastapi_detail(detail)
    if isinstance(detail, dict):
        return _from_dict(detail)
    if detail is not None:
        return _build(detail, None, None, None)
    return None


def provider_error_from_json(obj: object) -> ProviderError | None:
    """The provider error in a decoded JSON error body, or None if no known shape matches."""
    if isinstance(obj, list):
        # Google's REST errors sometimes arrive as a one-element list around the object.
        obj = obj[0] if obj else None
    if isinstance(obj, dict):
        return _from_dict(obj)
    return None


def _text_error(text: str) -> ProviderError | None:
    collapsed = " ".join(text.split())[:_TEXT_MESSAGE_CHARS]
    return ProviderError(message=collapsed) if collapsed else None


def parse_error_body(body: bytes, content_type: str | None) -> tuple[object, ProviderError | None]:
    """(parsed body, provider error) for an error response body.

    The body is tried as JSON whatever *content_type* says: providers and proxies label JSON
    errors text/plain or text/html often enough that the label cannot be trusted, and a body
    that is not JSON fails to decode quickly. Otherwise the body is UTF-8 text (bad bytes
    replaced) and its first 500 characters, whitespace collapsed, become the message.
    *content_type* is accepted so callers can pass what they have without special cases.
    """
    del content_type  # deliberately unused; see the docstring
    if body.startswith(_UTF8_BOM):
        body = body[len(_UTF8_BOM) :]
    try:
        parsed: object = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        text = body.decode("utf-8", errors="replace")
        return text, _text_error(text)
    if isinstance(parsed, str):
        return parsed, _text_error(parsed)
    return parsed, provider_error_from_json(parsed)


def request_id_from(get_header: Callable[[str], str | None]) -> str | None:
    """The first non-empty request id among REQUEST_ID_HEADERS, trimmed and length-capped.

    The cap keeps an upstream-chosen value from bloating every error message built from it.
    """
    for name in REQUEST_ID_HEADERS:
        value = get_header(name)
        if value is not None and (value := value.strip()):
            return value[:_MAX_REQUEST_ID_CHARS]
    return None
