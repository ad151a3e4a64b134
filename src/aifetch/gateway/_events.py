"""What an upstream stream event is: an error, part of the answer, or neither.

Pure functions over an event's ``data``, shared by the commit point (``_commit``) and the
relay (``_relay``). Decoding goes through small msgspec Structs that name only the fields
looked at; everything else in a chunk is skipped without being built.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["error_message_of", "is_content_data", "is_error_data"]


class _ErrorPayload(msgspec.Struct):
    error: Any = None


_error_decoder = msgspec.json.Decoder(_ErrorPayload)


def is_error_data(data: str) -> bool:
    """True for an event ``data`` holding an OpenAI error object ``{"error": {...}}``."""
    if not data.startswith("{") or '"error"' not in data:
        return False
    try:
        payload = _error_decoder.decode(data)
    except msgspec.DecodeError:
        return False
    return bool(payload.error)


def error_message_of(data: str) -> str:
    """The ``message`` inside an error payload, or a generic text."""
    try:
        payload = _error_decoder.decode(data)
    except msgspec.DecodeError:
        return "error event"
    err = payload.error
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"]) or "error event"
    return err if isinstance(err, str) and err else "error event"


class _Delta(msgspec.Struct):
    content: Any = None
    tool_calls: Any = None
    function_call: Any = None
    refusal: Any = None
    reasoning_content: Any = None
    reasoning: Any = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    text: Any = None
    finish_reason: Any = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: Any = None


_chunk_decoder = msgspec.json.Decoder(_Chunk)


def is_content_data(data: str) -> bool:
    """Does this event carry part of the answer? The commit point waits for one.

    A chunk holding only ``{"role": "assistant", "content": ""}`` does not: an error event
    may still follow it, and the call can still go to a fallback target. Data that is not
    an OpenAI chunk (and ``[DONE]``) counts as content: the gateway does not hold what it
    cannot read.
    """
    if not data:
        return False
    try:
        chunk = _chunk_decoder.decode(data)
    except msgspec.DecodeError:
        return True
    if chunk.usage is not None:
        return True
    for choice in chunk.choices or ():
        if choice.text or choice.finish_reason is not None:
            return True
        d = choice.delta
        if d is not None and (
            d.content
            or d.tool_calls
            or d.function_call
            or d.refusal
            or d.reasoning_content
            or d.reasoning
        ):
            return True
    return False
