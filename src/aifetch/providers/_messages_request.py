"""The gateway's ``/v1/messages``, the other way round: an Anthropic Messages request →
an OpenAI chat request, and an OpenAI ``chat.completion`` → an Anthropic Message.

So any upstream can answer an Anthropic SDK (or Claude Code): the chat request goes to an
OpenAI-kind upstream as it is, or on through the Gemini dialect. docs/DIALECTS.md has the
field table; the rules that are choices:

* Each ``system`` text block becomes one ``system`` message (the text kept exact).
* A user turn's ``tool_result`` blocks become ``tool`` messages, ahead of the turn's other
  content; their ``is_error`` flag has no OpenAI counterpart and is dropped.
* ``thinking`` blocks become ``reasoning_content`` and ``reasoning_signature`` on the
  assistant message, so the dialect that made them can rebuild them; ``redacted_thinking``
  has no OpenAI counterpart and is dropped.
* The output limit is sent as ``max_completion_tokens``; a stream asks for
  ``stream_options.include_usage`` so the final ``message_delta`` can carry the usage.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..openai._types import ChatCompletion
from ._types import ProviderUsage, TranslationError

__all__ = ["InboundRequest", "chat_completion_to_message", "messages_request_to_chat"]

_enc = msgspec.json.Encoder().encode


class Source(msgspec.Struct):
    type: str = ""
    media_type: str = ""
    data: str = ""
    url: str = ""


class Block(msgspec.Struct):
    type: str = ""
    text: str = ""
    source: Source | None = None
    id: str = ""
    name: str = ""
    input: msgspec.Raw = msgspec.Raw(b"{}")
    tool_use_id: str = ""
    content: str | list[Block] | None = None
    thinking: str = ""
    signature: str = ""


class InMessage(msgspec.Struct):
    role: str = ""
    content: str | list[Block] = ""


class InTool(msgspec.Struct):
    name: str = ""
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class InToolChoice(msgspec.Struct):
    type: str = "auto"
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Thinking(msgspec.Struct):
    type: str = "disabled"
    budget_tokens: int | None = None


class Metadata(msgspec.Struct):
    user_id: str | None = None


class OutputFormat(msgspec.Struct):
    type: str = ""
    schema: dict[str, Any] | None = None


class OutputConfig(msgspec.Struct):
    format: OutputFormat | None = None


class MessagesRequest(msgspec.Struct):
    model: str = ""
    messages: list[InMessage] = []
    system: str | list[Block] | None = None
    max_tokens: int | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stream: bool = False
    tools: list[InTool] | None = None
    tool_choice: InToolChoice | None = None
    thinking: Thinking | None = None
    metadata: Metadata | None = None
    output_config: OutputConfig | None = None


class InboundRequest(msgspec.Struct, frozen=True):
    """A ``/v1/messages`` call as the gateway routes it: the caller's ``model`` name, whether
    it streams, and ``body``, the equivalent OpenAI chat request (JSON)."""

    model: str
    stream: bool
    body: bytes


_decoder = msgspec.json.Decoder(MessagesRequest)
_completion = msgspec.json.Decoder(ChatCompletion)


def messages_request_to_chat(body: bytes) -> InboundRequest:
    """Translate; raises ``TranslationError`` (answer it with ``anthropic_body()``)."""
    try:
        request = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise TranslationError(f"Invalid request: {exc}", code="invalid_value") from None
    except msgspec.DecodeError as exc:
        raise TranslationError(f"The request body is not valid JSON: {exc}") from None
    out: dict[str, Any] = {"model": request.model, "messages": _messages(request)}
    if request.max_tokens is not None:
        out["max_completion_tokens"] = request.max_tokens
    for key in ("temperature", "top_p", "top_k"):
        value = getattr(request, key)
        if value is not None:
            out[key] = value
    if request.stop_sequences:
        out["stop"] = request.stop_sequences
    _tools(request, out)
    effort = _effort(request.thinking)
    if effort is not None:
        out["reasoning_effort"] = effort
    if request.metadata is not None and request.metadata.user_id:
        out["user"] = request.metadata.user_id
    fmt = request.output_config.format if request.output_config is not None else None
    if fmt is not None and fmt.type == "json_schema" and fmt.schema:
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": fmt.schema},
        }
    if request.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return InboundRequest(request.model, request.stream, _enc(out))


def _effort(thinking: Thinking | None) -> str | None:
    if thinking is None or thinking.type == "disabled":
        return None
    budget = thinking.budget_tokens
    if budget is None:  # adaptive thinking: the model decides
        return "medium"
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def _tools(request: MessagesRequest, out: dict[str, Any]) -> None:
    if request.tools:
        tools = []
        for i, tool in enumerate(request.tools):
            if tool.type not in (None, "custom"):
                raise TranslationError(
                    f"tools[{i}]: the server tool {tool.type!r} runs only on Anthropic's "
                    "platform; this model can take client tools (name, input_schema)",
                    param=f"tools[{i}].type",
                    code="unsupported_value",
                )
            function: dict[str, Any] = {"name": tool.name}
            if tool.description:
                function["description"] = tool.description
            function["parameters"] = tool.input_schema or {"type": "object", "properties": {}}
            tools.append({"type": "function", "function": function})
        out["tools"] = tools
    choice = request.tool_choice
    if choice is None:
        return
    kinds = {"auto": "auto", "any": "required", "none": "none"}
    if choice.type == "tool" and choice.name:
        out["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice.type in kinds:
        out["tool_choice"] = kinds[choice.type]
    else:
        raise TranslationError(
            f"tool_choice type {choice.type!r} is not one of auto, any, tool, none",
            param="tool_choice.type",
            code="invalid_value",
        )
    if choice.disable_parallel_tool_use and request.tools:
        out["parallel_tool_calls"] = False


def _messages(request: MessagesRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    system = request.system
    if isinstance(system, str):
        if system:
            out.append({"role": "system", "content": system})
    elif system is not None:
        out.extend({"role": "system", "content": b.text} for b in system if b.type == "text")
    for i, message in enumerate(request.messages):
        if message.role == "user":
            _user(message, i, out)
        elif message.role == "assistant":
            out.append(_assistant(message, i))
        else:
            raise TranslationError(
                f"messages[{i}]: role {message.role!r} is not user or assistant",
                param=f"messages[{i}].role",
                code="invalid_value",
            )
    return out


def _refused(i: int, j: int, kind: str) -> TranslationError:
    return TranslationError(
        f"messages[{i}].content[{j}]: {kind!r} blocks cannot be translated for this model "
        "(text, image, tool_use, tool_result and thinking can)",
        param=f"messages[{i}].content[{j}].type",
        code="unsupported_value",
    )


def _image(block: Block, i: int, j: int) -> dict[str, Any]:
    source = block.source
    if source is not None and source.type == "base64":
        url = f"data:{source.media_type};base64,{source.data}"
    elif source is not None and source.type == "url":
        url = source.url
    else:
        raise _refused(i, j, f"image source {source.type if source else None}")
    return {"type": "image_url", "image_url": {"url": url}}


def _user(message: InMessage, i: int, out: list[dict[str, Any]]) -> None:
    if isinstance(message.content, str):
        out.append({"role": "user", "content": message.content})
        return
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        if block.type == "text":
            parts.append({"type": "text", "text": block.text})
        elif block.type == "image":
            parts.append(_image(block, i, j))
        elif block.type == "tool_result":
            content = _result_text(block, i, j)
            out.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": content})
        else:
            raise _refused(i, j, block.type)
    if not parts:
        return
    if all(p["type"] == "text" for p in parts):
        out.append({"role": "user", "content": "".join(p["text"] for p in parts)})
    else:
        out.append({"role": "user", "content": parts})


def _result_text(block: Block, i: int, j: int) -> str:
    content = block.content
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for inner in content:
        if inner.type != "text":
            raise _refused(i, j, f"tool_result with {inner.type}")
        texts.append(inner.text)
    return "".join(texts)


def _assistant(message: InMessage, i: int) -> dict[str, Any]:
    if isinstance(message.content, str):
        return {"role": "assistant", "content": message.content}
    texts: list[str] = []
    reasoning: list[str] = []
    signature = ""
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            function = {"name": block.name, "arguments": bytes(block.input).decode()}
            calls.append({"id": block.id, "type": "function", "function": function})
        elif block.type == "thinking":
            reasoning.append(block.thinking)
            signature = block.signature or signature
        elif block.type != "redacted_thinking":
            raise _refused(i, j, block.type)
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        out["tool_calls"] = calls
    if reasoning:
        out["reasoning_content"] = "".join(reasoning)
    if signature:
        out["reasoning_signature"] = signature
    return out


_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish_reason: str | None) -> str:
    """Anthropic's ``stop_reason`` for an OpenAI ``finish_reason`` (unknown: end_turn)."""
    return _STOP.get(finish_reason or "", "end_turn")


def anthropic_usage(usage: ProviderUsage | None) -> dict[str, int]:
    """Anthropic's usage: ``input_tokens`` leaves out the cache reads it reports apart."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    return {
        "input_tokens": usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.completion_tokens,
    }


def provider_usage(usage: Any) -> ProviderUsage | None:
    """An OpenAI ``Usage`` (typed) as a ``ProviderUsage``."""
    if usage is None:
        return None
    prompt = usage.prompt_tokens_details or {}
    completion = usage.completion_tokens_details or {}
    return ProviderUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=int(prompt.get("cached_tokens") or 0),
        reasoning_tokens=int(completion.get("reasoning_tokens") or 0),
    )


def chat_completion_to_message(body: bytes, *, model: str) -> tuple[bytes, ProviderUsage | None]:
    """(Anthropic Message JSON, the usage it reports) for a ``chat.completion``. ``model``
    is the name the caller asked for."""
    completion = _completion.decode(body)
    choice = completion.choices[0] if completion.choices else None
    content: list[dict[str, Any]] = []
    finish = None
    if choice is not None:
        message = choice.message
        finish = choice.finish_reason
        reasoning = message.reasoning_content or ""
        signature = message.reasoning_signature or ""
        if reasoning or signature:
            content.append({"type": "thinking", "thinking": reasoning, "signature": signature})
        text = message.content or message.refusal
        if text:
            content.append({"type": "text", "text": text})
        if message.refusal and not message.content:
            finish = "content_filter"
        for call in message.tool_calls or ():
            content.append(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.function.name,
                    "input": tool_input(call.function.arguments),
                }
            )
    usage = provider_usage(completion.usage)
    out = {
        "id": completion.id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(finish),
        "stop_sequence": None,
        "usage": anthropic_usage(usage),
    }
    return _enc(out), usage


def tool_input(arguments: str) -> Any:
    """A tool call's arguments as Anthropic's ``input`` object. Arguments that are not a
    JSON object are kept, as text, under ``_raw_arguments`` rather than lost."""
    if not arguments.strip():
        return {}
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        value = None
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}
