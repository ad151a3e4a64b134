"""A whole Gemini ``GenerateContentResponse`` → an OpenAI ``chat.completion``.

Candidate 0's text parts join into ``content`` and its thought parts (``thought: true``)
into ``reasoning_content``; function calls become ``tool_calls`` (ids made stable when
Gemini gives none, see ``tool_call_id``); the first ``thoughtSignature`` becomes
``reasoning_signature``. A prompt blocked before any candidate is an empty answer with
``finish_reason: content_filter``.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from ._gemini_wire import GeminiResponse, finish_reason, tool_call_id, usage_of
from ._types import ProviderUsage

__all__ = ["decode_gemini_response", "gemini_response_to_chat"]

_decoder = msgspec.json.Decoder(GeminiResponse)
_enc = msgspec.json.Encoder().encode


def decode_gemini_response(body: bytes | str) -> GeminiResponse:
    return _decoder.decode(body)


def gemini_response_to_chat(
    body: bytes, *, model: str = "", created: int | None = None
) -> tuple[bytes, ProviderUsage | None]:
    """(``chat.completion`` JSON, the usage it reports)."""
    response = _decoder.decode(body)
    texts: list[str] = []
    thoughts: list[str] = []
    signature: str | None = None
    calls: list[dict[str, Any]] = []
    reason = "STOP"
    candidate = response.candidates[0] if response.candidates else None
    if candidate is not None:
        reason = candidate.finish_reason or "STOP"
        for part in candidate.content.parts if candidate.content is not None else ():
            if part.thought_signature and signature is None:
                signature = part.thought_signature
            call = part.function_call
            if call is not None:
                function = {"name": call.name, "arguments": bytes(call.args).decode()}
                call_id = tool_call_id(call, response.response_id, len(calls))
                calls.append({"id": call_id, "type": "function", "function": function})
            elif part.text:
                (thoughts if part.thought else texts).append(part.text)
    elif response.prompt_feedback is not None and response.prompt_feedback.block_reason:
        reason = "SAFETY"
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if signature:
        message["reasoning_signature"] = signature
    if calls:
        message["tool_calls"] = calls
    usage = usage_of(response.usage_metadata) if response.usage_metadata is not None else None
    completion = {
        "id": response.response_id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": response.model_version or model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(reason, bool(calls)),
            }
        ],
        "usage": usage.to_openai() if usage is not None else None,
    }
    return _enc(completion), usage
