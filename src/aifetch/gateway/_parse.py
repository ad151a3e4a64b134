"""Parse only what the gateway routes on; patch the body only when it must change; read
only the usage of an answer.

The request body is kept as the caller's raw bytes. ``decode_fields`` reads just ``model``,
``stream``, ``stream_options``, the output caps and ``n`` (msgspec skips every other field
without building it).
``patch_body`` changes the body for one upstream target: the model name (only if the target
names a different one) and ``stream_options.include_usage`` for streams. Adding
``stream_options`` when the caller sent none is a bytes-level splice after the opening
``{`` (no decode at all); every other change decodes to a dict and re-encodes, which is
the rare path.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any

import msgspec

from . import _codes as codes
from ._usage import IOUsageFields, Usage, UsageFields

__all__ = ["RoutingFields", "decode_fields", "one_value_per_key", "patch_body", "usage_of"]


class _StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


# Sanity bounds, not model limits (the upstream knows those): a count outside them is a
# mistake or an attack, refused before anything is forwarded. 128 is OpenAI's own cap on
# ``n``; a token count past int32 fits no model.
_TokenCount = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
_ChoiceCount = Annotated[int, msgspec.Meta(ge=1, le=128)]


class RoutingFields(msgspec.Struct):
    model: str
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    max_tokens: _TokenCount | None = None
    max_completion_tokens: _TokenCount | None = None
    max_output_tokens: _TokenCount | None = None  # the Responses API's cap
    n: _ChoiceCount | None = None

    @property
    def output_cap(self) -> int | None:
        """The most output tokens the call asks for, per choice, whatever its route calls
        the cap (chat: ``max_completion_tokens``, else ``max_tokens``; Messages:
        ``max_tokens``; Responses: ``max_output_tokens``); ``None`` when it sets none."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        if self.max_tokens is not None:
            return self.max_tokens
        return self.max_output_tokens

    @property
    def wants_usage(self) -> bool:
        """The caller itself asked for the usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)


_decoder = msgspec.json.Decoder(RoutingFields)
_encode = msgspec.json.Encoder().encode


def decode_fields(body: bytes) -> RoutingFields:
    """The routing fields, or a 400 GatewayError naming what is wrong."""
    try:
        if not body.isascii():
            # JSON text is UTF-8 (RFC 8259 §8.1), and msgspec checks only the strings it
            # keeps: invalid bytes elsewhere would be forwarded. isascii() is the fast path.
            body.decode("utf-8")
        return _decoder.decode(body)
    except UnicodeDecodeError:
        raise codes.INVALID_ENCODING("The request body is not valid UTF-8 JSON.") from None
    except RecursionError:
        # msgspec recurses per nesting level, and a deep enough body exhausts the stack.
        raise codes.INVALID_JSON("The request body's JSON is nested too deeply.") from None
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "missing required field `model`" in text:
            raise codes.MISSING_PARAMETER(
                "you must provide a model parameter", param="model"
            ) from None
        raise codes.INVALID_FIELD(f"invalid request body: {text}", param=_param_of(text)) from None
    except msgspec.DecodeError:
        raise codes.INVALID_JSON(
            "We could not parse the JSON body of your request. Send a valid JSON object."
        ) from None


# The top level only, each value kept as its raw JSON text (never parsed).
_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw])


def one_value_per_key(body: bytes) -> bytes:
    """``body`` with each top-level key once, keeping the value the gateway read.

    JSON parsers disagree on a repeated key (msgspec keeps the last, others the first), so
    a body with ``"model"`` twice (or once more spelt with escapes, ``"mod\\u0065l"``)
    could be allowed on one value and served on the other. The body is rebuilt from its
    top-level members, the last of each name winning as in ``decode_fields``; the values
    are copied as they are, never parsed. (This costs less than looking for repeated keys:
    ~4k instructions on a small body against ~1.2k for each ``bytes.count``.)
    """
    try:
        return _encode(_top_level.decode(body))
    except RecursionError:
        raise codes.INVALID_JSON("The request body's JSON is nested too deeply.") from None


def _param_of(text: str) -> str | None:
    marker = "- at `$."
    start = text.find(marker)
    if start < 0:
        return None
    return text[start + len(marker) :].rstrip("`") or None


_USAGE_ON = b'"stream_options":{"include_usage":true},'
_MODEL_KEY = b'"model"'
_AFTER_KEY = re.compile(rb"[ \t\r\n]*:[ \t\r\n]*")


@functools.lru_cache(maxsize=256)
def _model_members(public: str, upstream: str) -> tuple[bytes, bytes]:
    """``"model":"<public>"`` and ``"model":"<upstream>"`` as msgspec writes them."""
    return _MODEL_KEY + b":" + _encode(public), _MODEL_KEY + b":" + _encode(upstream)


def _rename_in_place(body: bytes, public: str, upstream: str) -> bytes | None:
    """Swap the model value at the bytes level, or ``None`` when that is not provably safe.

    A quote inside a JSON string is escaped, so the bytes ``"model"`` followed by ``:``
    occur only as a key. Without ``\\u`` escapes (the only way to spell that key another
    way) the top-level key ``decode_fields`` read is spelt so; when the bytes occur exactly
    once, they are that key, and its value is replaced if spelt as msgspec encodes it.
    """
    # bytes.find, not `in`: on bytes, `in` first tries its operand as an int (an exception
    # raised and cleared per call, ~50 ns, CPython 3.11).
    if body.count(_MODEL_KEY) != 1 or body.find(b"\\u") >= 0:
        return None
    old_member, new_member = _model_members(public, upstream)
    if body.find(old_member) >= 0:  # written without whitespace, as encoders write it
        return body.replace(old_member, new_member, 1)
    after = _AFTER_KEY.match(body, body.index(_MODEL_KEY) + len(_MODEL_KEY))
    if after is None:
        return None
    start = after.end()
    old = _encode(public)
    if not body.startswith(old, start):
        return None
    return body[:start] + _encode(upstream) + body[start + len(old) :]


def patch_body(body: bytes, fields: RoutingFields, upstream_model: str, force_usage: bool) -> bytes:
    """``body`` as one upstream target must receive it.

    ``force_usage``: the call streams and the gateway wants the usage chunk.
    """
    rename = upstream_model != fields.model
    add_usage = force_usage and not fields.wants_usage
    if not rename and not add_usage:
        return body
    if rename:
        renamed = _rename_in_place(body, fields.model, upstream_model)
        if renamed is not None:
            body, rename = renamed, False
            if not add_usage:
                return body
    if add_usage and not rename and fields.stream_options is None:
        # The body decoded as a JSON object with a "model" key, so after its first "{"
        # another member follows: a leading member plus "," keeps it valid.
        start = body.index(b"{") + 1
        return body[:start] + _USAGE_ON + body[start:]
    data: dict[str, Any] = msgspec.json.decode(body)
    if rename:
        data["model"] = upstream_model
    if add_usage:
        options = data.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        options["include_usage"] = True
        data["stream_options"] = options
    return _encode(data)


class _WithUsage(msgspec.Struct):
    usage: UsageFields | None = None


class _WithIOUsage(msgspec.Struct):
    usage: IOUsageFields | None = None


_usage_decoder = msgspec.json.Decoder(_WithUsage)
_io_usage_decoder = msgspec.json.Decoder(_WithIOUsage)
_USAGE_KEY = b'"usage"'


def usage_of(content: bytes) -> Usage | None:
    """The tokens of a non-stream answer, or ``None`` without usage.

    OpenAI-compatible servers put ``usage`` at the end, after ``choices`` (the bulk of the
    body), so the last ``"usage"`` is read first, as ``{`` + the rest of the body: that is
    valid JSON only when the match is a key of the top-level object (a nested key leaves
    closing brackets over, and a quote inside a string is escaped, so it follows a
    backslash, never ``{``, ``,`` or whitespace). Anything else falls back to decoding the
    whole body. A usage object without chat figures is read again in the Responses API's
    and Anthropic's shape (the answers of the routes relayed byte-exact).
    """
    at = content.rfind(_USAGE_KEY)
    if at < 0:
        return None
    usage: UsageFields | None
    try:
        if at > 0 and content[at - 1] in b"{, \t\r\n":
            try:
                usage = _usage_decoder.decode(b"{" + content[at:]).usage
            except msgspec.DecodeError:
                usage = _usage_decoder.decode(content).usage
        else:
            usage = _usage_decoder.decode(content).usage
    except msgspec.DecodeError:
        return None
    if usage is None:
        return None
    if usage.prompt_tokens is None and usage.completion_tokens is None:  # not chat's shape
        try:
            other = _io_usage_decoder.decode(content).usage
        except msgspec.DecodeError:
            return None
        return None if other is None else other.value()
    return usage.value()
