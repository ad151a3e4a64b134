"""Gemini ``GenerateContentResponse`` (the parts the translators read) and its mappings.

Field names follow the Gemini API reference ("Generating content": ``Candidate``,
``Part``, ``FunctionCall``, ``UsageMetadata``, ``FinishReason``); a streamed chunk is the
same object as a whole answer, so one Struct reads both.
"""

from __future__ import annotations

import msgspec

from ._types import ProviderUsage

__all__ = ["GeminiResponse", "finish_reason", "tool_call_id", "usage_of"]


class FunctionCall(msgspec.Struct, gc=False):
    name: str = ""
    args: msgspec.Raw = msgspec.Raw(b"{}")
    id: str | None = None


class Part(msgspec.Struct, rename="camel", gc=False):
    text: str | None = None
    thought: bool = False
    thought_signature: str | None = None
    function_call: FunctionCall | None = None


class Content(msgspec.Struct, gc=False):
    parts: list[Part] = []
    role: str = "model"


class Candidate(msgspec.Struct, rename="camel", gc=False):
    content: Content | None = None
    finish_reason: str | None = None
    index: int = 0


class UsageMetadata(msgspec.Struct, rename="camel", gc=False):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    total_token_count: int = 0
    cached_content_token_count: int = 0
    thoughts_token_count: int = 0
    tool_use_prompt_token_count: int = 0


class PromptFeedback(msgspec.Struct, rename="camel", gc=False):
    block_reason: str | None = None


class ErrorDetail(msgspec.Struct, gc=False):
    code: int = 0
    message: str = ""
    status: str = ""


class GeminiResponse(msgspec.Struct, rename="camel", gc=False):
    candidates: list[Candidate] = []
    usage_metadata: UsageMetadata | None = None
    model_version: str = ""
    response_id: str = ""
    prompt_feedback: PromptFeedback | None = None
    error: ErrorDetail | None = None


# FinishReason → finish_reason. The safety family is a content filter; the reasons about
# tool calls the model got wrong, language, "other" and unspecified end the answer as it
# stands ("stop"). STOP after function calls is "tool_calls", as OpenAI reports it.
_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)


def finish_reason(reason: str, called_tools: bool) -> str:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    if reason == "STOP" and called_tools:
        return "tool_calls"
    return "stop"


def tool_call_id(call: FunctionCall, response_id: str, index: int) -> str:
    """The provider's id, else one made from the response id and the call's position, so
    the same answer gets the same ids streamed or not."""
    if call.id:
        return call.id
    return f"call_{response_id}_{index}" if response_id else f"call_{index}"


def usage_of(usage: UsageMetadata) -> ProviderUsage:
    """``candidatesTokenCount`` leaves out the thoughts and ``promptTokenCount`` the tool-use
    prompt, which OpenAI's completion and prompt counts include."""
    return ProviderUsage(
        prompt_tokens=usage.prompt_token_count + usage.tool_use_prompt_token_count,
        completion_tokens=usage.candidates_token_count + usage.thoughts_token_count,
        cached_tokens=usage.cached_content_token_count,
        reasoning_tokens=usage.thoughts_token_count,
    )
