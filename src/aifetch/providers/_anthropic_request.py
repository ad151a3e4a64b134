"""OpenAI chat request → Anthropic Messages request (``POST /v1/messages``).

Follows the Anthropic API reference ("Messages", "Tool use", "Extended thinking") and the
OpenAI chat completions reference; docs/DIALECTS.md has the field table. Values in, values
out: the body is decoded once and the Messages body encoded once.

* ``system`` and ``developer`` messages, wherever they are, become ``system`` text blocks
  in order (Anthropic has no mid-conversation system turn).
* Consecutive messages of one role are merged into one turn, so tool results (each a
  ``tool`` message) land in one user turn, ``tool_result`` blocks first.
* An assistant message's ``reasoning_content`` with its ``reasoning_signature`` comes back
  as the ``thinking`` block it was (without a signature Anthropic refuses the block, so
  unsigned reasoning is not sent back).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ._chat_request import (
    ChatMessage,
    ChatRequest,
    data_url,
    decode_chat_request,
    message_text,
    tool_arguments,
    unsupported_part,
)
from ._types import ProviderOptions, ProviderRequest, TranslationError

__all__ = ["MESSAGES_PATH", "anthropic_auth_headers", "build_anthropic_request"]

MESSAGES_PATH = "/v1/messages"
_PROVIDER = "anthropic"
_enc = msgspec.json.Encoder().encode

# reasoning_effort → thinking budget_tokens (Anthropic's minimum budget is 1024).
_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
_MIN_BUDGET = 1024


def anthropic_auth_headers(api_key: str) -> list[tuple[str, str]]:
    """The key header, made once per upstream (never part of a ``ProviderRequest``)."""
    return [("x-api-key", api_key)]


def build_anthropic_request(
    body: bytes | Mapping[str, Any],
    *,
    model: str | None = None,
    stream: bool | None = None,
    options: ProviderOptions | None = None,
) -> ProviderRequest:
    """Translate an OpenAI chat request; ``model``/``stream`` override the body's own.

    Raises ``TranslationError`` (400) for what Anthropic cannot do.
    """
    options = options or ProviderOptions()
    request = decode_chat_request(body, _PROVIDER)
    _refuse(request)
    streaming = bool(request.stream) if stream is None else stream
    system, messages = _messages(request.messages)
    out: dict[str, Any] = {"model": model or request.model, "messages": messages}
    if system:
        out["system"] = system
    max_tokens = request.output_limit
    thinking = _thinking(request, max_tokens, options)
    if thinking is not None:
        out["thinking"] = thinking
        if max_tokens is None:  # leave the answer its default room beside the budget
            max_tokens = thinking["budget_tokens"] + options.max_tokens
    out["max_tokens"] = max_tokens if max_tokens is not None else options.max_tokens
    _sampling(request, out)
    _tools(request, out)
    if request.response_format is not None:
        _response_format(request, out)
    if request.user:
        out["metadata"] = {"user_id": request.user}
    if streaming:
        out["stream"] = True
    headers = [("content-type", "application/json")]
    headers.append(("anthropic-version", options.anthropic_version))
    if options.anthropic_beta:
        headers.append(("anthropic-beta", ",".join(options.anthropic_beta)))
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    return ProviderRequest(MESSAGES_PATH, headers, _enc(out), streaming, include_usage)


def _refuse(request: ChatRequest) -> None:
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(request, name):
            raise TranslationError(
                f"'{name}' is not supported by the anthropic upstream: leave it unset or 0",
                param=name,
                code="unsupported_parameter",
            )
    if request.temperature is not None and request.temperature > 1:
        raise TranslationError(
            "'temperature' above 1 is not supported by the anthropic upstream (its range "
            "is 0 to 1)",
            param="temperature",
            code="unsupported_value",
        )


def _sampling(request: ChatRequest, out: dict[str, Any]) -> None:
    if request.temperature is not None:
        out["temperature"] = request.temperature
    if request.top_p is not None:
        out["top_p"] = request.top_p
    if request.top_k is not None:
        out["top_k"] = request.top_k
    stops = request.stop_list
    if stops:
        out["stop_sequences"] = stops


def _thinking(
    request: ChatRequest, max_tokens: int | None, options: ProviderOptions
) -> dict[str, Any] | None:
    effort = request.reasoning_effort
    if effort is None or effort == "none":
        return None
    budget = _BUDGETS.get(effort)
    if budget is None:
        raise TranslationError(
            f"'reasoning_effort' must be one of none, minimal, low, medium, high (got {effort!r})",
            param="reasoning_effort",
            code="invalid_value",
        )
    if max_tokens is not None:
        budget = min(budget, max_tokens - 1)
        if budget < _MIN_BUDGET:
            raise TranslationError(
                "'reasoning_effort' needs max_completion_tokens above 1024 on the anthropic "
                "upstream (its thinking budget is at least 1024 tokens and below the limit)",
                param="reasoning_effort",
                code="unsupported_value",
            )
    if request.temperature not in (None, 1, 1.0):
        raise TranslationError(
            "with 'reasoning_effort' the anthropic upstream takes no 'temperature' but 1",
            param="temperature",
            code="unsupported_value",
        )
    return {"type": "enabled", "budget_tokens": budget}


def _tools(request: ChatRequest, out: dict[str, Any]) -> None:
    if request.tools:
        tools = []
        for tool in request.tools:
            fn = tool.function
            assert fn is not None  # checked by decode_chat_request
            spec: dict[str, Any] = {"name": fn.name}
            if fn.description:
                spec["description"] = fn.description
            spec["input_schema"] = fn.parameters or {"type": "object", "properties": {}}
            tools.append(spec)
        out["tools"] = tools
    choice = _tool_choice(request)
    if choice is not None:
        out["tool_choice"] = choice


def _tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if choice is None:
        if request.parallel_tool_calls is False and request.tools:
            return {"type": "auto", "disable_parallel_tool_use": True}
        return None
    if isinstance(choice, str):
        kinds = {"auto": "auto", "required": "any", "none": "none"}
        if choice not in kinds:
            raise TranslationError(
                f"'tool_choice' must be auto, required, none or a named function (got {choice!r})",
                param="tool_choice",
                code="invalid_value",
            )
        result: dict[str, Any] = {"type": kinds[choice]}
    else:
        if choice.function is None or not choice.function.name:
            raise TranslationError(
                "'tool_choice' names no function", param="tool_choice", code="invalid_value"
            )
        result = {"type": "tool", "name": choice.function.name}
    if request.parallel_tool_calls is False and result["type"] != "none":
        result["disable_parallel_tool_use"] = True
    return result


def _response_format(request: ChatRequest, out: dict[str, Any]) -> None:
    fmt = request.response_format
    assert fmt is not None
    if fmt.type == "text":
        return
    if fmt.type == "json_schema" and fmt.json_schema is not None and fmt.json_schema.schema:
        # Anthropic's structured outputs: output_config.format (JSON Schema).
        out["output_config"] = {"format": {"type": "json_schema", "schema": fmt.json_schema.schema}}
        return
    raise TranslationError(
        f"response_format {fmt.type!r} is not supported by the anthropic upstream: send "
        "'json_schema' with a schema, or describe the JSON in the prompt",
        param="response_format",
        code="unsupported_value",
    )


def _messages(messages: list[ChatMessage]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.role
        if role in ("system", "developer"):
            text = message_text(message, i, _PROVIDER)
            if text:
                system.append({"type": "text", "text": text})
        elif role == "user":
            _append(turns, "user", _user_blocks(message, i))
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(message, i))
        elif role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
                "content": message_text(message, i, _PROVIDER),
            }
            _append(turns, "user", [result])
        else:
            raise TranslationError(
                f"messages[{i}]: role {role!r} cannot be translated for the anthropic "
                "upstream (system, developer, user, assistant and tool can)",
                param=f"messages[{i}].role",
                code="unsupported_value",
            )
    return system, turns


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _user_blocks(message: ChatMessage, i: int) -> list[dict[str, Any]]:
    content = message.content
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content or ""}]
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if part.type == "text":
            blocks.append({"type": "text", "text": part.text or ""})
        elif part.type == "image_url" and part.image_url is not None:
            param = f"messages[{i}].content[{j}].image_url.url"
            url = part.image_url.url
            found = data_url(url, param)
            if found is not None:
                source = {"type": "base64", "media_type": found[0], "data": found[1]}
            else:
                source = {"type": "url", "url": url}
            blocks.append({"type": "image", "source": source})
        else:
            raise unsupported_part(i, j, part.type, _PROVIDER)
    return blocks


def _assistant_blocks(message: ChatMessage, i: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.reasoning_signature:
        blocks.append(
            {
                "type": "thinking",
                "thinking": message.reasoning_content or "",
                "signature": message.reasoning_signature,
            }
        )
    content = message.content
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif content is not None:
        for j, part in enumerate(content):
            text = part.text if part.type == "text" else part.refusal
            if part.type not in ("text", "refusal"):
                raise unsupported_part(i, j, part.type, _PROVIDER)
            if text:
                blocks.append({"type": "text", "text": text})
    for k, call in enumerate(message.tool_calls or ()):
        param = f"messages[{i}].tool_calls[{k}].function.arguments"
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": tool_arguments(call, param),
            }
        )
    return blocks
