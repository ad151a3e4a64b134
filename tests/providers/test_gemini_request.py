"""OpenAI chat request → Gemini generateContent request, and what is refused."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from aifetch.providers import TranslationError, dialect

GEMINI = dialect("gemini")
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
    "rkJggg=="
)
SIGNATURE = "AY89a19YsnFp7FOSIejJDV9XuMU996D+ZaDJiD6L9EEi+Lh+VGTEGqM3Lip3DPI7QzY="


def build(body: dict[str, Any], **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    request = GEMINI.build_request(msgspec.json.encode(body), **kwargs)
    return request, json.loads(request.body)


def test_paths_and_headers_never_carry_the_key() -> None:
    body = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}
    request, _ = build(body)
    assert request.path == "/models/gemini-2.5-flash:generateContent"
    assert request.headers == [("content-type", "application/json")]
    request, _ = build({**body, "stream": True})
    assert request.path == "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert "key=" not in request.path
    request, _ = build({**body, "model": "models/gemini 2"}, stream=False)
    assert request.path == "/models/gemini%202:generateContent"
    assert GEMINI.auth_headers("AIzaKey") == [("x-goog-api-key", "AIzaKey")]


def test_a_whole_conversation_maps_field_by_field() -> None:
    body = {
        "model": "gemini-3-pro-preview",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Use metric units."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Paris and Tokyo?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "thought summaries are not sent back",
                "reasoning_signature": SIGNATURE,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 18}'},
            {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
            {
                "role": "assistant",
                "content": "Paris 18, Tokyo sunny.",
                "reasoning_signature": "sig-text",
            },
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "additionalProperties": False,
                    },
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_completion_tokens": 300,
        "stop": ["END", "STOP"],
        "temperature": 1.5,
        "top_p": 0.9,
        "top_k": 40,
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "reasoning_effort": "low",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}},
        },
    }
    _, out = build(body)
    assert out == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Weather in Paris and Tokyo?"},
                    {"inlineData": {"mimeType": "image/png", "data": PNG}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    # The signature goes back on the first function call, where it came.
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": SIGNATURE,
                    },
                    {"functionCall": {"name": "get_weather", "args": {"city": "Tokyo"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 18}}},
                    {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
                ],
            },
            {
                "role": "model",
                "parts": [{"text": "Paris 18, Tokyo sunny.", "thoughtSignature": "sig-text"}],
            },
            {"role": "user", "parts": [{"text": "Thanks"}]},
        ],
        "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Use metric units."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather for a city",
                        "parametersJsonSchema": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "additionalProperties": False,
                        },
                    }
                ]
            }
        ],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
        },
        "generationConfig": {
            "temperature": 1.5,
            "topP": 0.9,
            "topK": 40,
            "maxOutputTokens": 300,
            "presencePenalty": 0.5,
            "frequencyPenalty": 0.25,
            "seed": 7,
            "stopSequences": ["END", "STOP"],
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object"},
            "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
        },
    }


@pytest.mark.parametrize(
    ("choice", "config"),
    [("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"})],
)
def test_tool_choice_modes(choice: str, config: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    _, out = build(
        {
            "model": "g",
            "messages": [{"role": "user", "content": "x"}],
            "tools": tools,
            "tool_choice": choice,
        }
    )
    assert out["toolConfig"] == {"functionCallingConfig": config}
    assert out["tools"] == [{"functionDeclarations": [{"name": "f"}]}]


def test_json_object_and_reasoning_none() -> None:
    body = {"model": "g", "messages": [{"role": "user", "content": "x"}]}
    _, out = build({**body, "response_format": {"type": "json_object"}, "reasoning_effort": "none"})
    assert out["generationConfig"] == {
        "responseMimeType": "application/json",
        "thinkingConfig": {"thinkingBudget": 0},
    }
    _, out = build(body)
    assert "generationConfig" not in out


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"n": 3}, "n", "unsupported_parameter"),
        ({"logprobs": True}, "logprobs", "unsupported_parameter"),
        ({"function_call": "auto"}, "function_call", "unsupported_parameter"),
        ({"model": ""}, "model", "invalid_value"),
        ({"reasoning_effort": "max"}, "reasoning_effort", "invalid_value"),
        (
            {"response_format": {"type": "json_schema"}},
            "response_format.json_schema",
            "invalid_value",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
            "unsupported_value",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "tool", "tool_call_id": "nope", "content": "1"},
                ]
            },
            "messages[1].tool_call_id",
            "invalid_value",
        ),
        (
            {"messages": [{"role": "critic", "content": "x"}]},
            "messages[0].role",
            "unsupported_value",
        ),
    ],
)
def test_what_cannot_be_translated_is_a_400_naming_the_field(
    extra: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(TranslationError) as caught:
        build({"model": "g", "messages": [{"role": "user", "content": "x"}], **extra})
    assert (caught.value.param, caught.value.code) == (param, code)
