"""Providers that do not speak OpenAI, made to: Anthropic and Gemini behind OpenAI's chat
completions, and (for the gateway's ``/v1/messages``) any OpenAI-shaped model behind
Anthropic's Messages API.

As client pipes, for ``AsyncClient`` and ``Client`` alike::

    client = aifetch.AsyncClient(pipes=[aifetch.providers.anthropic(api_key=key)])
    resp = await client.post("/chat/completions", json={"model": "claude-sonnet-4-5", ...})
    async with aifetch.openai.ChatStream(resp) as stream: ...   # as against OpenAI

The translation itself is sans-IO and public, for a server (the gateway) or any other
transport: ``dialect("anthropic")`` / ``dialect("gemini")`` give a ``Dialect`` (request,
response, error and stream translation, see its module docstring), and
``messages_request_to_chat``, ``chat_completion_to_message``, ``MessagesStreamTranslator``
and ``openai_error_to_anthropic`` are the inbound direction. Every stream translator has
the ``StreamTranslator`` shape. docs/DIALECTS.md lists every mapped field and what is
refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..pipes import PipeSpec
from ._dialect import Dialect, dialect
from ._errors import openai_error_to_anthropic
from ._messages_request import InboundRequest, chat_completion_to_message, messages_request_to_chat
from ._messages_stream import MessagesStreamTranslator
from ._types import (
    ProviderOptions,
    ProviderRequest,
    ProviderUsage,
    StreamTranslator,
    TranslationError,
)

__all__ = [
    "Dialect",
    "InboundRequest",
    "MessagesStreamTranslator",
    "ProviderOptions",
    "ProviderRequest",
    "ProviderUsage",
    "StreamTranslator",
    "TranslationError",
    "anthropic",
    "chat_completion_to_message",
    "dialect",
    "gemini",
    "messages_request_to_chat",
    "openai_error_to_anthropic",
]


def anthropic(
    api_key: str,
    *,
    base_url: str = "https://api.anthropic.com",
    version: str = "2023-06-01",
    beta: str | Sequence[str] | None = None,
    max_tokens: int = 4096,
) -> PipeSpec:
    """A pipe that sends OpenAI chat requests to Anthropic's Messages API.

    The key goes in ``x-api-key``; ``version`` and ``beta`` become the ``anthropic-version``
    and ``anthropic-beta`` headers; ``max_tokens`` is sent when the request sets no output
    limit (Anthropic requires one). Put it last in ``pipes=[...]`` (closest to the network);
    to retry Anthropic's 529 (overloaded), give ``pipes.retry`` ``statuses`` that include it
    (``aifetch.providers.dialect("anthropic").retry_statuses``).
    """
    betas = (beta,) if isinstance(beta, str) else tuple(beta or ())
    options = ProviderOptions(
        anthropic_version=version, anthropic_beta=betas, max_tokens=max_tokens
    )
    return _spec("anthropic", api_key, base_url, options)


def gemini(
    api_key: str, *, base_url: str = "https://generativelanguage.googleapis.com/v1beta"
) -> PipeSpec:
    """A pipe that sends OpenAI chat requests to the Gemini API (``generateContent``, and
    ``streamGenerateContent?alt=sse`` for streams). The key goes in the ``x-goog-api-key``
    header, never in the URL."""
    return _spec("gemini", api_key, base_url, ProviderOptions())


def _spec(name: str, api_key: str, base_url: str, options: ProviderOptions) -> PipeSpec:
    if not api_key:
        raise ValueError(f"aifetch.providers.{name}() needs an api_key")
    return PipeSpec(
        "provider", dialect=dialect(name), api_key=api_key, base_url=base_url, options=options
    )
