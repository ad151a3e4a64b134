"""Token usage as upstreams report it, read the same way wherever it is found: a plain
answer's ``usage``, a stream's usage chunk, a translated provider's figures.

OpenAI's shape: ``prompt_tokens`` and ``completion_tokens``, with
``prompt_tokens_details.cached_tokens`` (part of the prompt) and
``completion_tokens_details.reasoning_tokens`` (part of the completion). Metrics, the
access log, limits and the ledger all take this one value.
"""

from __future__ import annotations

import msgspec

__all__ = ["Usage", "UsageFields"]


class Usage(msgspec.Struct, frozen=True):
    """Tokens one answer used. ``cached_tokens`` is part of ``prompt_tokens``,
    ``reasoning_tokens`` of ``completion_tokens``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None


class _CompletionDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class UsageFields(msgspec.Struct):
    """An OpenAI ``usage`` object as decoded (every field optional, nulls allowed)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None

    def value(self) -> Usage:
        prompt, completion = self.prompt_tokens or 0, self.completion_tokens or 0
        cached = reasoning = 0
        if self.prompt_tokens_details is not None:
            cached = self.prompt_tokens_details.cached_tokens or 0
        if self.completion_tokens_details is not None:
            reasoning = self.completion_tokens_details.reasoning_tokens or 0
        return Usage(prompt, completion, cached, reasoning)
