"""A dialect: the pure pieces that make one provider speak OpenAI chat completions.

The gateway's upstream kinds and the client's provider pipes drive a dialect the same
way, so adding a provider adds one ``Dialect`` here and nothing to either caller::

    d = dialect("anthropic")
    auth = d.auth_headers(api_key)                     # once per upstream
    req = d.build_request(body, model=..., stream=..., options=...)   # ProviderRequest
    # POST base_url + req.path with req.headers + auth and req.body, then:
    #   2xx, stream:     t = d.stream_translator(model=..., include_usage=True)
    #                    each decoded event → t.feed(event); at the clean end → t.close()
    #   2xx, not stream: body, usage = d.translate_response(raw, model=...)
    #   not 2xx:         status, body = d.translate_error(status, raw)
    #   retry/fallback on d.retry_statuses (529 included for Anthropic)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._anthropic_request import anthropic_auth_headers, build_anthropic_request
from ._anthropic_response import anthropic_response_to_chat
from ._anthropic_stream import AnthropicStreamTranslator
from ._errors import RETRYABLE_STATUSES, anthropic_error_to_openai, gemini_error_to_openai
from ._gemini_request import build_gemini_request, gemini_auth_headers
from ._gemini_response import gemini_response_to_chat
from ._gemini_stream import GeminiStreamTranslator
from ._types import ProviderOptions, ProviderRequest, ProviderUsage, StreamTranslator

__all__ = ["DIALECTS", "Dialect", "dialect"]

_Build = Callable[..., ProviderRequest]
_Response = Callable[..., tuple[bytes, ProviderUsage | None]]


class Dialect:
    """One provider's translation, OpenAI chat completions on the caller's side."""

    __slots__ = (
        "_auth",
        "_build",
        "_error",
        "_response",
        "_stream",
        "default_base_url",
        "name",
        "retry_statuses",
    )

    def __init__(
        self,
        name: str,
        default_base_url: str,
        auth: Callable[[str], list[tuple[str, str]]],
        build: _Build,
        response: _Response,
        error: Callable[[int, bytes], tuple[int, bytes]],
        stream: Callable[..., StreamTranslator],
    ) -> None:
        self.name = name
        self.default_base_url = default_base_url
        self.retry_statuses = RETRYABLE_STATUSES
        self._auth = auth
        self._build = build
        self._response = response
        self._error = error
        self._stream = stream

    def auth_headers(self, api_key: str) -> list[tuple[str, str]]:
        """The header(s) carrying the key: ``x-api-key`` or ``x-goog-api-key``."""
        return self._auth(api_key)

    def build_request(
        self,
        body: bytes | Mapping[str, Any],
        *,
        model: str | None = None,
        stream: bool | None = None,
        options: ProviderOptions | None = None,
    ) -> ProviderRequest:
        """The provider request for an OpenAI chat request (``TranslationError`` if it
        cannot be translated). ``model`` and ``stream`` override the body's."""
        return self._build(body, model=model, stream=stream, options=options)

    def translate_response(
        self, body: bytes, *, model: str = "", created: int | None = None
    ) -> tuple[bytes, ProviderUsage | None]:
        """A 2xx non-stream body → (``chat.completion`` JSON, its usage). Raises
        ``msgspec.DecodeError`` (a ``ValueError``) for a body that is not the provider's."""
        return self._response(body, model=model, created=created)

    def translate_error(self, status: int, body: bytes) -> tuple[int, bytes]:
        """An error response → (the same status, an OpenAI error body)."""
        return self._error(status, body)

    def stream_translator(
        self, *, model: str = "", include_usage: bool = True, created: int | None = None
    ) -> StreamTranslator:
        """A new state machine for one streamed answer."""
        return self._stream(model=model, include_usage=include_usage, created=created)

    def __repr__(self) -> str:
        return f"<Dialect {self.name}>"


DIALECTS: dict[str, Dialect] = {
    "anthropic": Dialect(
        "anthropic",
        "https://api.anthropic.com",
        anthropic_auth_headers,
        build_anthropic_request,
        anthropic_response_to_chat,
        anthropic_error_to_openai,
        AnthropicStreamTranslator,
    ),
    "gemini": Dialect(
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta",
        gemini_auth_headers,
        build_gemini_request,
        gemini_response_to_chat,
        gemini_error_to_openai,
        GeminiStreamTranslator,
    ),
}


def dialect(name: str) -> Dialect:
    """The dialect of an upstream kind; ``KeyError`` names the kinds there are."""
    try:
        return DIALECTS[name]
    except KeyError:
        raise KeyError(f"no dialect {name!r} (there are: {', '.join(sorted(DIALECTS))})") from None
