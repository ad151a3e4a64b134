"""Anthropic Messages wire shapes (the parts the translators read) and their mappings.

Fields follow the Anthropic API reference ("Messages", "Streaming Messages"); anything
else a response carries is ignored on decode. Each event type has its own Struct, so a
stream event is decoded straight into the shape its ``event:`` name announces.
"""

from __future__ import annotations

import msgspec

from ._types import ProviderUsage

__all__ = [
    "Block",
    "BlockDelta",
    "BlockStart",
    "BlockStop",
    "ErrorEvent",
    "Message",
    "MessageDelta",
    "MessageStart",
    "Usage",
    "finish_reason",
    "usage_of",
]


class OutputDetails(msgspec.Struct, gc=False):
    thinking_tokens: int | None = None


class Usage(msgspec.Struct, gc=False):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens_details: OutputDetails | None = None

    def merge(self, later: Usage) -> Usage:
        """``later``'s counts where it has them (``message_delta`` usage is cumulative)."""
        details = later.output_tokens_details or self.output_tokens_details
        return Usage(
            _pick(later.input_tokens, self.input_tokens),
            _pick(later.output_tokens, self.output_tokens),
            _pick(later.cache_creation_input_tokens, self.cache_creation_input_tokens),
            _pick(later.cache_read_input_tokens, self.cache_read_input_tokens),
            details,
        )


def _pick(later: int | None, earlier: int | None) -> int | None:
    return earlier if later is None else later


class Block(msgspec.Struct, gc=False):
    """A content block: ``text``, ``thinking``, ``redacted_thinking``, ``tool_use``, or a
    server-side block (``server_tool_use``, ``*_tool_result``) that is not translated."""

    type: str = ""
    text: str = ""
    thinking: str = ""
    signature: str = ""
    id: str = ""
    name: str = ""
    input: msgspec.Raw = msgspec.Raw(b"{}")


class Message(msgspec.Struct, gc=False):
    id: str = ""
    model: str = ""
    content: list[Block] = []
    stop_reason: str | None = None
    usage: Usage | None = None


class MessageStart(msgspec.Struct, gc=False):
    message: Message = msgspec.field(default_factory=Message)


class BlockStart(msgspec.Struct, gc=False):
    index: int = 0
    content_block: Block = msgspec.field(default_factory=Block)


class Delta(msgspec.Struct, gc=False):
    type: str = ""
    text: str = ""
    partial_json: str = ""
    thinking: str = ""
    signature: str = ""


class BlockDelta(msgspec.Struct, gc=False):
    index: int = 0
    delta: Delta = msgspec.field(default_factory=Delta)


class BlockStop(msgspec.Struct, gc=False):
    index: int = 0


class StopDelta(msgspec.Struct, gc=False):
    stop_reason: str | None = None


class MessageDelta(msgspec.Struct, gc=False):
    delta: StopDelta = msgspec.field(default_factory=StopDelta)
    usage: Usage | None = None


class ErrorDetail(msgspec.Struct, gc=False):
    type: str = ""
    message: str = ""


class ErrorEvent(msgspec.Struct, gc=False):
    error: ErrorDetail = msgspec.field(default_factory=ErrorDetail)


# stop_reason → finish_reason. pause_turn (a server tool paused the turn) ends this
# response normally; model_context_window_exceeded is a length cut like max_tokens.
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}


def finish_reason(stop_reason: str | None) -> str:
    """OpenAI's ``finish_reason`` for an Anthropic ``stop_reason`` (unknown ones: stop)."""
    return _FINISH.get(stop_reason or "", "stop")


def usage_of(usage: Usage) -> ProviderUsage:
    """Anthropic counts input as uncached + cache creation + cache read; OpenAI's
    ``prompt_tokens`` is their sum and ``cached_tokens`` the cache reads."""
    created = usage.cache_creation_input_tokens or 0
    read = usage.cache_read_input_tokens or 0
    details = usage.output_tokens_details
    return ProviderUsage(
        prompt_tokens=(usage.input_tokens or 0) + created + read,
        completion_tokens=usage.output_tokens or 0,
        cached_tokens=read,
        reasoning_tokens=(details.thinking_tokens or 0) if details is not None else 0,
        cache_write_tokens=created,
    )
