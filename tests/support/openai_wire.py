"""Builders for OpenAI wire-format bodies, shared by the fake upstream and tests.

Everything here is pure: values in, JSON-ready dicts or bytes out. The shapes
follow the OpenAI REST API reference (chat.completion, chat.completion.chunk,
text_completion, embedding list, model list, error envelope). IDs and the
``created`` timestamp are fixed so that tests can compare whole bodies.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

JSON = dict[str, Any]

DEFAULT_MODEL = "fake-model"
CREATED = 1_700_000_000
CHAT_ID = "chatcmpl-fake"
COMPLETION_ID = "cmpl-fake"
SSE_DONE = b"data: [DONE]\n\n"

_encode = msgspec.json.Encoder().encode


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (key order kept)."""
    return _encode(obj)


def sse_event(data: bytes | str | Mapping[str, Any], *, event: str | None = None) -> bytes:
    """One SSE event block.

    A mapping becomes JSON. Text containing newlines is sent as several
    ``data:`` lines, which a decoder joins back with ``\\n`` (HTML §9.2.6).
    """
    if isinstance(data, Mapping):
        payload = dumps(data)
    elif isinstance(data, str):
        payload = data.encode()
    else:
        payload = data
    lines = [b"data: " + line for line in payload.split(b"\n")]
    if event is not None:
        lines.insert(0, b"event: " + event.encode())
    return b"\n".join(lines) + b"\n\n"


def sse_comment(text: str = "keep-alive") -> bytes:
    """An SSE comment line; decoders ignore it (HTML §9.2.6, lines starting with ':')."""
    return b": " + text.encode() + b"\n\n"


def split_content(content: str, n_chunks: int | None = None) -> list[str]:
    """Split text into stream pieces.

    Without ``n_chunks``: one piece per word, each carrying its leading space,
    the way tokenised model output arrives. With ``n_chunks``: that many
    character slices of near-equal size.
    """
    if not content:
        return []
    if n_chunks is None:
        words = content.split(" ")
        pieces = [words[0], *(" " + w for w in words[1:])]
        return pieces if pieces[0] else pieces[1:]
    if not 1 <= n_chunks <= len(content):
        raise ValueError(f"n_chunks must be between 1 and {len(content)}, got {n_chunks}")
    size, extra = divmod(len(content), n_chunks)
    pieces, start = [], 0
    for i in range(n_chunks):
        end = start + size + (1 if i < extra else 0)
        pieces.append(content[start:end])
        start = end
    return pieces


def synthetic_content(n_words: int) -> str:
    """Deterministic text of exactly ``n_words`` words (benchmarks ask for long streams)."""
    return " ".join(f"tok{i}" for i in range(n_words))


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> JSON:
    """OpenAI's error envelope: ``{"error": {message, type, param, code}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def usage_body(prompt_tokens: int, completion_tokens: int) -> JSON:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def count_prompt_tokens(request: Mapping[str, Any] | None) -> int:
    """A stand-in token count: whitespace-separated words of the prompt or messages."""
    if not request:
        return 0
    texts: list[str] = []
    prompt = request.get("prompt")
    if isinstance(prompt, str):
        texts.append(prompt)
    elif isinstance(prompt, list):
        texts.extend(p for p in prompt if isinstance(p, str))
    for message in request.get("messages") or []:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return sum(len(t.split()) for t in texts)


def tool_call_objects(tool_calls: Sequence[Mapping[str, Any]]) -> list[JSON]:
    """Normalise ``[{"name", "arguments", "id"?}]`` into OpenAI ``tool_calls`` entries.

    ``arguments`` may be a mapping (encoded to a JSON string) or a string.
    """
    out: list[JSON] = []
    for i, call in enumerate(tool_calls):
        arguments = call.get("arguments", "")
        if not isinstance(arguments, str):
            arguments = dumps(arguments).decode()
        out.append(
            {
                "id": call.get("id", f"call_{i}"),
                "type": "function",
                "function": {"name": call["name"], "arguments": arguments},
            }
        )
    return out


def chat_completion_body(
    content: str | None,
    *,
    model: str = DEFAULT_MODEL,
    usage: JSON | None = None,
    tool_calls: Sequence[Mapping[str, Any]] | None = None,
    finish_reason: str | None = None,
) -> JSON:
    """A non-stream ``chat.completion`` object."""
    message: JSON = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_call_objects(tool_calls)
    reason = finish_reason or ("tool_calls" if tool_calls else "stop")
    body: JSON = {
        "id": CHAT_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reason}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def chat_chunk(
    delta: Mapping[str, Any],
    *,
    model: str = DEFAULT_MODEL,
    finish_reason: str | None = None,
    with_usage_field: bool = False,
) -> JSON:
    """One ``chat.completion.chunk`` with a single choice.

    With ``stream_options.include_usage`` OpenAI adds ``"usage": null`` to every
    chunk before the final usage chunk; ``with_usage_field`` mirrors that.
    """
    chunk: JSON = {
        "id": CHAT_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [
            {"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish_reason}
        ],
    }
    if with_usage_field:
        chunk["usage"] = None
    return chunk


def chat_usage_chunk(usage: JSON, *, model: str = DEFAULT_MODEL) -> JSON:
    """The final usage chunk: empty ``choices`` and the totals."""
    return {
        "id": CHAT_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [],
        "usage": usage,
    }


def chat_stream_chunks(
    content: str,
    *,
    model: str = DEFAULT_MODEL,
    n_chunks: int | None = None,
    tool_calls: Sequence[Mapping[str, Any]] | None = None,
    usage: JSON | None = None,
) -> list[JSON]:
    """The chunk objects of a whole chat stream, in OpenAI's order.

    Role chunk, one chunk per content piece, tool-call chunks (header then
    argument pieces), the finish chunk, then the usage chunk when ``usage``
    is given. ``[DONE]`` is framing, not a chunk, so it is not included.
    """
    flag = usage is not None
    chunks = [chat_chunk({"role": "assistant", "content": ""}, model=model, with_usage_field=flag)]
    for piece in split_content(content, n_chunks):
        chunks.append(chat_chunk({"content": piece}, model=model, with_usage_field=flag))
    for i, call in enumerate(tool_call_objects(tool_calls or ())):
        head = {"index": i, "id": call["id"], "type": "function"}
        head["function"] = {"name": call["function"]["name"], "arguments": ""}
        chunks.append(chat_chunk({"tool_calls": [head]}, model=model, with_usage_field=flag))
        for piece in split_content(call["function"]["arguments"], None):
            delta = {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
            chunks.append(chat_chunk(delta, model=model, with_usage_field=flag))
    reason = "tool_calls" if tool_calls else "stop"
    chunks.append(chat_chunk({}, model=model, finish_reason=reason, with_usage_field=flag))
    if usage is not None:
        chunks.append(chat_usage_chunk(usage, model=model))
    return chunks


def text_completion_body(text: str, *, model: str = DEFAULT_MODEL, usage: JSON | None) -> JSON:
    """A non-stream legacy ``text_completion`` object (``POST /v1/completions``)."""
    body: JSON = {
        "id": COMPLETION_ID,
        "object": "text_completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def text_completion_chunks(text: str, *, model: str = DEFAULT_MODEL) -> list[JSON]:
    """Stream chunks of a legacy completion: one per word, the last with ``finish_reason``."""
    pieces = split_content(text) or [""]
    return [
        {
            "id": COMPLETION_ID,
            "object": "text_completion",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "text": piece,
                    "logprobs": None,
                    "finish_reason": "stop" if i == len(pieces) - 1 else None,
                }
            ],
        }
        for i, piece in enumerate(pieces)
    ]


def embedding_vector(text: str, dim: int) -> list[float]:
    """A deterministic unit-free vector in [-1, 1) derived from the text's hash."""
    raw = b""
    counter = 0
    while len(raw) < dim * 4:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    ints = struct.unpack(f"<{dim}I", raw[: dim * 4])
    return [round(v / 2**31 - 1.0, 6) for v in ints]


def embeddings_body(inputs: Sequence[str], *, model: str = DEFAULT_MODEL, dim: int = 8) -> JSON:
    """An embeddings ``list`` with one vector per input."""
    data = [
        {"object": "embedding", "index": i, "embedding": embedding_vector(text, dim)}
        for i, text in enumerate(inputs)
    ]
    tokens = sum(len(t.split()) for t in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def models_body(ids: Sequence[str]) -> JSON:
    """The ``GET /v1/models`` list."""
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "created": CREATED, "owned_by": "fake"} for i in ids],
    }
