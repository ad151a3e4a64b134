"""Writing OpenAI ``chat.completion.chunk`` SSE blocks, cheaply.

A stream's chunks differ only in their delta, so the bytes before it (``id``, ``object``,
``created``, ``model`` and the start of the choice) are built once per stream and each chunk
is that head, the delta's JSON and a fixed tail. The only per-chunk encoding is the delta's
string values (``msgspec`` escapes them): a text delta costs one small string encode and one
join (bench/bench_translate.py).

The blocks are exactly what an OpenAI upstream sends: ``data: {chunk}`` and an empty line,
``"logprobs": null`` and ``"finish_reason"`` on every choice, the usage chunk with
``"choices": []``, and ``data: [DONE]`` last.
"""

from __future__ import annotations

import msgspec

from ._types import ProviderUsage

__all__ = ["DONE", "PING", "ChunkWriter", "openai_error_event"]

_enc = msgspec.json.Encoder().encode

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"

_TAIL = b'},"logprobs":null,"finish_reason":null}]}\n\n'
_FINISH = b'{},"logprobs":null,"finish_reason":"'
_FINISH_END = b'"}]}\n\n'


class ChunkWriter:
    """The chunks of one stream (choice 0), with its ``id``, ``model`` and ``created``."""

    __slots__ = ("_content", "_head", "_reasoning", "_signature", "_usage_head")

    def __init__(self, id: str, model: str, created: int) -> None:
        base = b"".join(
            (
                b'data: {"id":',
                _enc(id),
                b',"object":"chat.completion.chunk","created":',
                str(int(created)).encode(),
                b',"model":',
                _enc(model),
            )
        )
        self._head = base + b',"choices":[{"index":0,"delta":'
        self._usage_head = base + b',"choices":[],"usage":'
        self._content = self._head + b'{"content":'
        self._reasoning = self._head + b'{"reasoning_content":'
        self._signature = self._head + b'{"reasoning_signature":'

    def role(self) -> bytes:
        """The first chunk, as OpenAI sends it: the role and an empty content."""
        return self._head + b'{"role":"assistant","content":""' + _TAIL

    def content(self, text: str) -> bytes:
        return self._content + _enc(text) + _TAIL

    def reasoning(self, text: str) -> bytes:
        return self._reasoning + _enc(text) + _TAIL

    def signature(self, signature: str) -> bytes:
        """The signature of the reasoning, so a next turn can send it back (DIALECTS.md)."""
        return self._signature + _enc(signature) + _TAIL

    def tool_start(self, index: int, id: str, name: str, arguments: str = "") -> bytes:
        """A tool call's first chunk: its index, id, type and name (and any arguments)."""
        return b"".join(
            (
                self._head,
                b'{"tool_calls":[{"index":',
                str(index).encode(),
                b',"id":',
                _enc(id),
                b',"type":"function","function":{"name":',
                _enc(name),
                b',"arguments":',
                _enc(arguments),
                b"}}]",
                _TAIL,
            )
        )

    def tool_arguments(self, index: int, arguments: str) -> bytes:
        """A piece of a tool call's arguments, sent as it arrives."""
        return b"".join(
            (
                self._head,
                b'{"tool_calls":[{"index":',
                str(index).encode(),
                b',"function":{"arguments":',
                _enc(arguments),
                b"}}]",
                _TAIL,
            )
        )

    def finish(self, reason: str) -> bytes:
        return self._head + _FINISH + reason.encode() + _FINISH_END

    def usage(self, usage: ProviderUsage) -> bytes:
        return self._usage_head + _enc(usage.to_openai()) + b"}\n\n"


def openai_error_event(
    message: str, type: str, code: str | None = None, param: str | None = None
) -> bytes:
    """``event: error`` with an OpenAI error object: what ends a stream that failed."""
    body = _enc({"error": {"message": message, "type": type, "param": param, "code": code}})
    return b"event: error\ndata: " + body + b"\n\n"
