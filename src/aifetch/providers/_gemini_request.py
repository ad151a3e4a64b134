"""OpenAI chat request → Gemini ``generateContent`` / ``streamGenerateContent`` request.

Follows the Gemini API reference ("Generating content", "Function calling", "Thinking",
"Thought signatures"); docs/DIALECTS.md has the field table.

* The key goes in the ``x-goog-api-key`` header, never in the URL (``?key=`` would end up
  in access logs); the stream is asked for as SSE with ``?alt=sse``.
* ``system``/``developer`` messages become ``systemInstruction``; ``assistant`` is the
  ``model`` role; tool results become ``functionResponse`` parts named after the call they
  answer (looked up by ``tool_call_id``), consecutive ones in one turn.
* ``reasoning_signature`` on an assistant message goes back as the ``thoughtSignature`` of
  its first function call (where Gemini validates it), or of its last text part when it
  made none. Thought summaries (``reasoning_content``) are not sent back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

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

__all__ = ["build_gemini_request", "gemini_auth_headers"]

_PROVIDER = "gemini"
_enc = msgspec.json.Encoder().encode
_BUDGETS = {"none": 0, "minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def gemini_auth_headers(api_key: str) -> list[tuple[str, str]]:
    """The key header, made once per upstream (never part of a ``ProviderRequest``)."""
    return [("x-goog-api-key", api_key)]


def build_gemini_request(
    body: bytes | Mapping[str, Any],
    *,
    model: str | None = None,
    stream: bool | None = None,
    options: ProviderOptions | None = None,
) -> ProviderRequest:
    """Translate an OpenAI chat request; ``model``/``stream`` override the body's own.

    Raises ``TranslationError`` (400) for what Gemini cannot do.
    """
    del options  # Gemini needs no per-upstream request settings
    request = decode_chat_request(body, _PROVIDER)
    streaming = bool(request.stream) if stream is None else stream
    name = (model or request.model).removeprefix("models/")
    if not name:
        raise TranslationError("'model' is required", param="model", code="invalid_value")
    method = "streamGenerateContent?alt=sse" if streaming else "generateContent"
    path = f"/models/{quote(name, safe='')}:{method}"
    system, contents = _contents(request.messages)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    _tools(request, out)
    config = _generation_config(request)
    if config:
        out["generationConfig"] = config
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    headers = [("content-type", "application/json")]
    return ProviderRequest(path, headers, _enc(out), streaming, include_usage)


def _generation_config(request: ChatRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    pairs = (
        ("temperature", request.temperature),
        ("topP", request.top_p),
        ("topK", request.top_k),
        ("maxOutputTokens", request.output_limit),
        ("presencePenalty", request.presence_penalty),
        ("frequencyPenalty", request.frequency_penalty),
        ("seed", request.seed),
    )
    for key, value in pairs:
        if value is not None:
            config[key] = value
    if request.stop_list:
        config["stopSequences"] = request.stop_list
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        config["responseMimeType"] = "application/json"
        if fmt.type == "json_schema":
            if fmt.json_schema is None or not fmt.json_schema.schema:
                raise TranslationError(
                    "response_format json_schema needs a schema",
                    param="response_format.json_schema",
                    code="invalid_value",
                )
            config["responseJsonSchema"] = fmt.json_schema.schema
        elif fmt.type != "json_object":
            raise TranslationError(
                f"response_format {fmt.type!r} is not supported by the gemini upstream",
                param="response_format",
                code="unsupported_value",
            )
    effort = request.reasoning_effort
    if effort is not None:
        if effort not in _BUDGETS:
            raise TranslationError(
                f"'reasoning_effort' must be one of none, minimal, low, medium, high "
                f"(got {effort!r})",
                param="reasoning_effort",
                code="invalid_value",
            )
        thinking: dict[str, Any] = {"thinkingBudget": _BUDGETS[effort]}
        if effort != "none":
            thinking["includeThoughts"] = True
        config["thinkingConfig"] = thinking
    return config


def _tools(request: ChatRequest, out: dict[str, Any]) -> None:
    if request.tools:
        declarations = []
        for tool in request.tools:
            fn = tool.function
            assert fn is not None  # checked by decode_chat_request
            spec: dict[str, Any] = {"name": fn.name}
            if fn.description:
                spec["description"] = fn.description
            if fn.parameters:
                # JSON Schema as the caller wrote it (``parameters`` takes an OpenAPI
                # subset that refuses common keywords such as additionalProperties).
                spec["parametersJsonSchema"] = fn.parameters
            declarations.append(spec)
        out["tools"] = [{"functionDeclarations": declarations}]
    choice = request.tool_choice
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in _MODES:
            raise TranslationError(
                f"'tool_choice' must be auto, required, none or a named function (got {choice!r})",
                param="tool_choice",
                code="invalid_value",
            )
        config: dict[str, Any] = {"mode": _MODES[choice]}
    else:
        if choice.function is None or not choice.function.name:
            raise TranslationError(
                "'tool_choice' names no function", param="tool_choice", code="invalid_value"
            )
        config = {"mode": "ANY", "allowedFunctionNames": [choice.function.name]}
    out["toolConfig"] = {"functionCallingConfig": config}


def _contents(messages: list[ChatMessage]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id → function name, from earlier assistant turns
    for i, message in enumerate(messages):
        role = message.role
        if role in ("system", "developer"):
            text = message_text(message, i, _PROVIDER)
            if text:
                system.append({"text": text})
        elif role == "user":
            _append(contents, "user", _user_parts(message, i))
        elif role == "assistant":
            _append(contents, "model", _model_parts(message, i, names))
        elif role == "tool":
            _append(contents, "user", [_function_response(message, i, names)])
        else:
            raise TranslationError(
                f"messages[{i}]: role {role!r} cannot be translated for the gemini upstream "
                "(system, developer, user, assistant and tool can)",
                param=f"messages[{i}].role",
                code="unsupported_value",
            )
    return system, contents


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _user_parts(message: ChatMessage, i: int) -> list[dict[str, Any]]:
    content = message.content
    if content is None or isinstance(content, str):
        return [{"text": content or ""}]
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if part.type == "text":
            parts.append({"text": part.text or ""})
        elif part.type == "image_url" and part.image_url is not None:
            param = f"messages[{i}].content[{j}].image_url.url"
            found = data_url(part.image_url.url, param)
            if found is None:
                raise TranslationError(
                    f"{param}: the gemini upstream takes images inline, as data: URLs "
                    "('data:image/png;base64,...'), not by http URL",
                    param=param,
                    code="unsupported_value",
                )
            parts.append({"inlineData": {"mimeType": found[0], "data": found[1]}})
        else:
            raise unsupported_part(i, j, part.type, _PROVIDER)
    return parts


def _model_parts(message: ChatMessage, i: int, names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    content = message.content
    if isinstance(content, str):
        if content:
            parts.append({"text": content})
    elif content is not None:
        for j, part in enumerate(content):
            if part.type not in ("text", "refusal"):
                raise unsupported_part(i, j, part.type, _PROVIDER)
            text = part.text if part.type == "text" else part.refusal
            if text:
                parts.append({"text": text})
    calls: list[dict[str, Any]] = []
    for k, call in enumerate(message.tool_calls or ()):
        param = f"messages[{i}].tool_calls[{k}].function.arguments"
        names[call.id] = call.function.name
        args = tool_arguments(call, param)
        calls.append({"functionCall": {"name": call.function.name, "args": args}})
    signature = message.reasoning_signature
    if signature:
        if calls:
            calls[0]["thoughtSignature"] = signature
        elif parts:
            parts[-1]["thoughtSignature"] = signature
    return parts + calls


def _function_response(message: ChatMessage, i: int, names: dict[str, str]) -> dict[str, Any]:
    name = names.get(message.tool_call_id or "")
    if name is None:
        raise TranslationError(
            f"messages[{i}]: tool_call_id {message.tool_call_id!r} answers no tool call of "
            "an earlier assistant message (the gemini upstream needs the function's name)",
            param=f"messages[{i}].tool_call_id",
            code="invalid_value",
        )
    text = message_text(message, i, _PROVIDER)
    try:
        value = msgspec.json.decode(text) if text else None
    except msgspec.DecodeError:
        value = None
    # functionResponse.response is an object: a JSON object result is passed as it is,
    # anything else is wrapped.
    response = value if isinstance(value, dict) else {"result": text}
    return {"functionResponse": {"name": name, "response": response}}
