"""A whole Anthropic Message (non-stream answer) → an OpenAI ``chat.completion``.

Text blocks join into ``content``, ``thinking`` blocks into ``reasoning_content`` (the
signature into ``reasoning_signature``), ``tool_use`` blocks become ``tool_calls`` with the
input JSON as the arguments text, and server-side blocks are left out. The message is
shaped as OpenAI sends it: ``content``, ``refusal`` and ``logprobs`` present even when null.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from ._anthropic_wire import Message, finish_reason, usage_of
from ._types import ProviderUsage

__all__ = ["anthropic_response_to_chat", "decode_anthropic_message"]

_decoder = msgspec.json.Decoder(Message)
_enc = msgspec.json.Encoder().encode


def decode_anthropic_message(body: bytes) -> Message:
    """Raises ``msgspec.DecodeError`` (a ``ValueError``) when ``body`` is not a Message."""
    return _decoder.decode(body)


def anthropic_response_to_chat(
    body: bytes, *, model: str = "", created: int | None = None
) -> tuple[bytes, ProviderUsage | None]:
    """(``chat.completion`` JSON, the usage it reports). ``model`` is used when the
    message names none; ``created`` defaults to now (Anthropic sends no timestamp)."""
    message = _decoder.decode(body)
    texts: list[str] = []
    reasoning: list[str] = []
    signature = ""
    calls: list[dict[str, Any]] = []
    for block in message.content:
        kind = block.type
        if kind == "text":
            texts.append(block.text)
        elif kind == "thinking":
            reasoning.append(block.thinking)
            signature = block.signature or signature
        elif kind == "tool_use":
            function = {"name": block.name, "arguments": bytes(block.input).decode()}
            calls.append({"id": block.id, "type": "function", "function": function})
    out: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if reasoning:
        out["reasoning_content"] = "".join(reasoning)
    if signature:
        out["reasoning_signature"] = signature
    if calls:
        out["tool_calls"] = calls
    usage = usage_of(message.usage) if message.usage is not None else None
    completion = {
        "id": message.id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": message.model or model,
        "choices": [
            {
                "index": 0,
                "message": out,
                "logprobs": None,
                "finish_reason": finish_reason(message.stop_reason),
            }
        ],
        "usage": usage.to_openai() if usage is not None else None,
    }
    return _enc(completion), usage
