"""The built-in ``mock`` provider: deterministic OpenAI-format responses, no network.

It is a client pipe that short-circuits: it answers the request itself with a synthetic
``aifetch.AsyncResponse`` instead of calling ``next``. The response body is an async
generator, so the gateway's whole path (relay, usage, metrics, disconnects) runs exactly
as it does against a real upstream, offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec

import aifetch

from ._config import MockConfig
from ._mock_checks import MockRefusal, check_request

__all__ = ["MOCK_CREATED", "chat_chunks", "completion_chunks", "mock_pipe", "split_text"]

# A fixed timestamp keeps every byte the mock sends reproducible.
MOCK_CREATED = 1_700_000_000

_encode = msgspec.json.Encoder().encode


class _MockRequest(msgspec.Struct):
    model: str = "mock"
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = None
    input: str | list[Any] | None = None
    prompt: Any = None
    messages: list[Any] | None = None


def split_text(text: str, pieces: int) -> list[str]:
    """``text`` cut into ``pieces`` non-empty parts (fewer if it has fewer characters)."""
    pieces = max(1, min(pieces, len(text)))
    size, extra = divmod(len(text), pieces)
    out, start = [], 0
    for i in range(pieces):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return out


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _sse(obj: Any) -> bytes:
    return b"data: " + _encode(obj) + b"\n\n"


def chat_chunks(model: str, parts: list[str], usage: dict[str, int] | None) -> list[bytes]:
    """The SSE blocks of a streamed chat completion, ``[DONE]`` included."""
    base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": MOCK_CREATED}
    base["model"] = model

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [choice]})

    blocks = [chunk({"role": "assistant", "content": ""}, None)]
    blocks.extend(chunk({"content": part}, None) for part in parts)
    blocks.append(chunk({}, "stop"))
    if usage is not None:
        blocks.append(_sse({**base, "choices": [], "usage": usage}))
    blocks.append(b"data: [DONE]\n\n")
    return blocks


def completion_chunks(model: str, parts: list[str], usage: dict[str, int] | None) -> list[bytes]:
    """The SSE blocks of a streamed legacy completion, ``[DONE]`` included."""
    base = {"id": "cmpl-mock", "object": "text_completion", "created": MOCK_CREATED}
    base["model"] = model

    def chunk(text: str, finish: str | None) -> bytes:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [choice]})

    blocks = [chunk(part, None) for part in parts]
    blocks.append(chunk("", "stop"))
    if usage is not None:
        blocks.append(_sse({**base, "choices": [], "usage": usage}))
    blocks.append(b"data: [DONE]\n\n")
    return blocks


def _chat_body(model: str, text: str, usage: dict[str, int]) -> bytes:
    message = {"role": "assistant", "content": text, "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    return _encode(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": MOCK_CREATED,
            "model": model,
            "choices": [choice],
            "usage": usage,
        }
    )


def _completion_body(model: str, text: str, usage: dict[str, int]) -> bytes:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}
    return _encode(
        {
            "id": "cmpl-mock",
            "object": "text_completion",
            "created": MOCK_CREATED,
            "model": model,
            "choices": [choice],
            "usage": usage,
        }
    )


def _vector(text: str, dims: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0 - 0.5, 6) for b in digest[:dims]]


def _embeddings_body(model: str, inputs: str | list[Any] | None) -> bytes:
    items = [inputs] if isinstance(inputs, str) or inputs is None else inputs
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(str(item))}
        for i, item in enumerate(items)
    ]
    tokens = sum(len(str(item)) // 4 + 1 for item in items)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return _encode({"object": "list", "data": data, "model": model, "usage": usage})


async def _paced(
    blocks: list[bytes], interval: float, signal: aifetch.AbortSignal | None
) -> AsyncIterator[bytes]:
    """``blocks`` one per ``interval``; an abort of the request ends the body at once with
    ``AbortError``, as it ends a real upstream's read (a caller that left, a shutdown)."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    def on_abort(_reason: object) -> None:
        loop.call_soon_threadsafe(stopped.set)  # an abort may come from any thread

    handle = signal.add_listener(on_abort) if signal is not None else None
    try:
        for block in blocks:
            if interval > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), interval)
            if signal is not None:
                signal.throw_if_aborted()
            yield block
    finally:
        if signal is not None:
            signal.remove_listener(handle)


_JSON = {"content-type": "application/json"}
_SSE = {"content-type": "text/event-stream; charset=utf-8"}


def _answer(
    config: MockConfig, path: str, body: bytes, signal: aifetch.AbortSignal | None = None
) -> aifetch.AsyncResponse:
    try:
        data = msgspec.json.decode(body or b"{}")
    except msgspec.DecodeError:
        data = None
    if not isinstance(data, dict):
        err = (
            b'{"error":{"message":"mock: invalid JSON body","type":"invalid_request_error",'
            b'"param":null,"code":null}}'
        )
        return aifetch.AsyncResponse(err, status=400, headers=_JSON)
    # Refused as OpenAI refuses it, so code tried here fails the same way there.
    refusal = check_request(path, data)
    try:
        req = msgspec.convert(data, _MockRequest)
    except msgspec.ValidationError as exc:
        # Fields the gateway checks before an upstream sees them (``model``, ``stream``,
        # ``max_tokens``): met only by the mock used without the gateway in front.
        refusal = refusal or MockRefusal(f"mock: {exc}", None, "invalid_type")
    if refusal is not None:
        return aifetch.AsyncResponse(_encode(refusal.body()), status=400, headers=_JSON)
    if path.endswith("/embeddings"):
        return aifetch.AsyncResponse(_embeddings_body(req.model, req.input), headers=_JSON)
    chunks = config.chunks if req.max_tokens is None else max(1, min(config.chunks, req.max_tokens))
    parts = split_text(config.text, chunks)
    usage = _usage(len(body) // 4 + 1, len(parts))
    legacy = path.endswith("/completions") and not path.endswith("/chat/completions")
    if not req.stream:
        make = _completion_body if legacy else _chat_body
        return aifetch.AsyncResponse(make(req.model, "".join(parts), usage), headers=_JSON)
    wants_usage = bool(req.stream_options and req.stream_options.get("include_usage"))
    blocks = (completion_chunks if legacy else chat_chunks)(
        req.model, parts, usage if wants_usage else None
    )
    return aifetch.AsyncResponse(_paced(blocks, config.interval, signal), headers=_SSE)


_MODELS_PATH = "/models"


def mock_pipe(
    config: MockConfig,
) -> Callable[[aifetch.Request, Any], Awaitable[aifetch.AsyncResponse]]:
    """A client pipe answering OpenAI routes without calling ``next``."""

    async def pipe(request: aifetch.Request, next: Any) -> aifetch.AsyncResponse:
        path = urlsplit(request.url).path
        if path.endswith(_MODELS_PATH):
            listing = {"object": "list", "data": [{"id": "mock", "object": "model"}]}
            return aifetch.AsyncResponse(_encode(listing), headers=_JSON)
        body = request.body if isinstance(request.body, bytes) else b""
        return _answer(config, path, body, request.signal)

    return pipe
