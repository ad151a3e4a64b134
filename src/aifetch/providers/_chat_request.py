"""Reading an OpenAI chat completions request, for the dialects that translate it.

The body is decoded once, from bytes, into the Structs below (fields from the OpenAI API
reference, "Create chat completion"); fields no dialect knows are ignored, as msgspec
does by default. What the providers cannot do is refused here, once for both, with a
``TranslationError`` naming the field. Provider-specific limits (penalties for Anthropic,
http image URLs for Gemini) are refused by the dialect itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from ._types import TranslationError

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "ContentPart",
    "data_url",
    "decode_chat_request",
    "message_text",
    "tool_arguments",
    "unsupported_part",
]


class ImageURL(msgspec.Struct):
    url: str = ""
    detail: str | None = None


class ContentPart(msgspec.Struct):
    type: str = "text"
    text: str | None = None
    image_url: ImageURL | None = None
    refusal: str | None = None


class FunctionCall(msgspec.Struct):
    name: str = ""
    arguments: str = ""


class ToolCall(msgspec.Struct):
    id: str = ""
    type: str = "function"
    function: FunctionCall = msgspec.field(default_factory=FunctionCall)


class ChatMessage(msgspec.Struct):
    """A message; ``reasoning_signature`` is our extension (see docs/DIALECTS.md)."""

    role: str = ""
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    reasoning_signature: str | None = None


class FunctionDef(msgspec.Struct):
    name: str = ""
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(msgspec.Struct):
    type: str = "function"
    function: FunctionDef | None = None


class NamedFunction(msgspec.Struct):
    name: str = ""


class ToolChoice(msgspec.Struct):
    type: str = "function"
    function: NamedFunction | None = None


class JSONSchema(msgspec.Struct):
    name: str = ""
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseFormat(msgspec.Struct):
    type: str = "text"
    json_schema: JSONSchema | None = None


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class ChatRequest(msgspec.Struct):
    model: str = ""
    messages: list[ChatMessage] = []
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: str | list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: str | ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    n: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    audio: Any = None
    modalities: list[str] | None = None
    prediction: Any = None
    web_search_options: Any = None

    @property
    def output_limit(self) -> int | None:
        """``max_completion_tokens`` (the current name) or else ``max_tokens``."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


_decoder = msgspec.json.Decoder(ChatRequest)
_PATH = re.compile(r"at `\$\.?(.*)`$")


def decode_chat_request(body: bytes | Mapping[str, Any], provider: str) -> ChatRequest:
    """Decode and check the request; raise ``TranslationError`` for what ``provider``
    cannot do whichever way it is asked."""
    try:
        if isinstance(body, bytes | bytearray | memoryview):
            request = _decoder.decode(body)
        else:
            request = msgspec.convert(body, ChatRequest)
    except msgspec.ValidationError as exc:
        text = str(exc)
        found = _PATH.search(text)
        raise TranslationError(
            f"Invalid request: {text}",
            param=found.group(1) if found else None,
            code="invalid_value",
        ) from None
    except msgspec.DecodeError as exc:
        raise TranslationError(f"The request body is not valid JSON: {exc}") from None
    _refuse_common(request, provider)
    return request


def _unsupported(param: str, provider: str, hint: str) -> TranslationError:
    return TranslationError(
        f"'{param}' is not supported by the {provider} upstream: {hint}",
        param=param,
        code="unsupported_parameter",
    )


def _refuse_common(request: ChatRequest, provider: str) -> None:
    if request.n not in (None, 1):
        raise _unsupported("n", provider, "send one request per choice instead of n > 1")
    if request.logprobs or request.top_logprobs:
        name = "logprobs" if request.logprobs else "top_logprobs"
        raise _unsupported(name, provider, "the provider does not return log probabilities")
    if request.logit_bias:
        raise _unsupported("logit_bias", provider, "the provider has no token biasing")
    if request.functions is not None or request.function_call is not None:
        name = "functions" if request.functions is not None else "function_call"
        raise _unsupported(name, provider, "use 'tools' and 'tool_choice' instead")
    if request.audio is not None or (request.modalities and "audio" in request.modalities):
        raise _unsupported("audio", provider, "only text output is translated")
    if request.prediction is not None:
        raise _unsupported("prediction", provider, "predicted outputs are OpenAI-only")
    if request.web_search_options is not None:
        raise _unsupported("web_search_options", provider, "use a function tool instead")
    for i, tool in enumerate(request.tools or ()):
        if tool.type != "function" or tool.function is None:
            raise TranslationError(
                f"tools[{i}]: only function tools can be translated for the {provider} "
                f"upstream (got type {tool.type!r})",
                param=f"tools[{i}].type",
                code="unsupported_value",
            )
    if not request.messages:
        raise TranslationError(
            "'messages' must hold at least one message", param="messages", code="invalid_value"
        )


def message_text(message: ChatMessage, index: int, provider: str) -> str:
    """The text of a system, developer or tool message (text parts joined)."""
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content):
        if part.type != "text":
            raise TranslationError(
                f"messages[{index}] ({message.role}) may only hold text parts for the "
                f"{provider} upstream (got {part.type!r})",
                param=f"messages[{index}].content[{j}].type",
                code="unsupported_value",
            )
        texts.append(part.text or "")
    return "".join(texts)


def unsupported_part(index: int, j: int, kind: str, provider: str) -> TranslationError:
    return TranslationError(
        f"messages[{index}].content[{j}]: content parts of type {kind!r} cannot be "
        f"translated for the {provider} upstream (text and image_url can)",
        param=f"messages[{index}].content[{j}].type",
        code="unsupported_value",
    )


_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+);base64,", re.ASCII)


def data_url(url: str, param: str) -> tuple[str, str] | None:
    """``(media type, base64 data)`` of a ``data:`` URL, ``None`` for any other URL."""
    if not url.startswith("data:"):
        return None
    found = _DATA_URL.match(url)
    if found is None:
        raise TranslationError(
            f"{param}: an image data URL must be 'data:<media type>;base64,<data>'",
            param=param,
            code="invalid_value",
        )
    return found.group(1), url[found.end() :]


def tool_arguments(call: ToolCall, param: str) -> Any:
    """A tool call's arguments as a JSON value (``{}`` for empty arguments)."""
    text = call.function.arguments
    if not text.strip():
        return {}
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        raise TranslationError(
            f"{param}: the tool call's arguments are not valid JSON, and the provider "
            "takes them as a JSON object",
            param=param,
            code="invalid_value",
        ) from None
