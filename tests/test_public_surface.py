"""The public surface is pinned: adding or removing a name is a deliberate change here."""

from __future__ import annotations

import importlib

import pytest

import aifetch

EXPECTED = {
    "aifetch": [
        "AbortController",
        "AbortError",
        "AbortSignal",
        "AifetchError",
        "AsyncClient",
        "AsyncEventSource",
        "AsyncResponse",
        "AuthenticationError",
        "BadRequestError",
        "BodyTooLargeError",
        "BodyUsedError",
        "Client",
        "ConflictError",
        "ContentTypeError",
        "EventSource",
        "EventTooLargeError",
        "HTTPError",
        "Headers",
        "IncompleteStreamError",
        "InternalServerError",
        "InvalidChunkError",
        "InvalidURLError",
        "NetworkError",
        "NotFoundError",
        "PermissionDeniedError",
        "RateLimitError",
        "RedirectError",
        "Request",
        "Response",
        "SSEError",
        "StreamError",
        "Timeout",
        "TimeoutError",
        "ToolCallArgumentsError",
        "UnprocessableEntityError",
        "__version__",
        "fetch",
        "pipes",
    ],
    "aifetch.pipes": [
        "PipeSpec",
        "api_key",
        "base_url",
        "bearer",
        "headers",
        "log",
        "raise_for_status",
        "retry",
        "timeout",
    ],
    "aifetch.sse": [
        "EventTooLargeError",
        "SSEBlockSplitter",
        "SSEDecoder",
        "SSEError",
        "ServerSentEvent",
        "block_is_comment_only",
        "encode_comment",
        "encode_event",
        "parse_block",
    ],
    "aifetch.openai": [
        "AsyncStreamingResponse",
        "ChatCompletion",
        "ChatCompletionAccumulator",
        "ChatCompletionChunk",
        "ChatCompletionMessage",
        "ChatCompletionTokenLogprob",
        "ChatStream",
        "Choice",
        "ChoiceDelta",
        "ChoiceDeltaFunctionCall",
        "ChoiceDeltaToolCall",
        "ChoiceDeltaToolCallFunction",
        "ChoiceLogprobs",
        "ChunkChoice",
        "Function",
        "InvalidChunkError",
        "SyncStreamingResponse",
        "TextDeltas",
        "ToolCall",
        "ToolCallArgumentsError",
        "TopLogprob",
        "Usage",
        "decode_chunk",
    ],
    "aifetch.gateway": [
        "Call",
        "ConfigError",
        "EventHook",
        "GatewayApp",
        "GatewayConfig",
        "GatewayError",
        "Next",
        "Pipe",
        "Reply",
        "create_app",
        "default_config",
        "load_config",
        "log_calls",
        "parse_config",
        "request_policy",
    ],
    "aifetch.providers": [
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
    ],
}


@pytest.mark.parametrize("module_name", sorted(EXPECTED))
def test_all_is_pinned_and_sorted(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__all__ == EXPECTED[module_name]
    assert module.__all__ == sorted(module.__all__)


@pytest.mark.parametrize(
    "module_name",
    [
        "aifetch",
        "aifetch.pipes",
        "aifetch.providers",
        "aifetch.sse",
        "aifetch.openai",
        "aifetch.gateway",
    ],
)
def test_every_exported_name_resolves(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, name


def test_errors_subclass_the_builtins_they_mean() -> None:
    assert issubclass(aifetch.TimeoutError, TimeoutError)
    assert issubclass(aifetch.NetworkError, ConnectionError)
    assert issubclass(aifetch.InvalidURLError, ValueError)
    assert issubclass(aifetch.BodyUsedError, TypeError)
    for name in aifetch.__all__:
        value = getattr(aifetch, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, aifetch.AifetchError), name


def test_error_response_has_fetch_shape() -> None:
    for cls in (aifetch.AsyncResponse, aifetch.Response):
        resp = cls.error()
        assert (resp.status, resp.type, resp.ok, resp.status_text) == (0, "error", False, "")
