"""OpenAI chat request → Anthropic Messages request, and what is refused."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from aifetch.providers import ProviderOptions, TranslationError, dialect

ANTHROPIC = dialect("anthropic")
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
    "rkJggg=="
)


def build(body: dict[str, Any], **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    request = ANTHROPIC.build_request(msgspec.json.encode(body), **kwargs)
    return request, json.loads(request.body)


def test_a_whole_conversation_maps_field_by_field() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here and there?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "Two cities: two calls.",
                "reasoning_signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",
                "tool_calls": [
                    {
                        "id": "toolu_01A",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    },
                    {
                        "id": "toolu_01B",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01A", "content": "4°C"},
            {
                "role": "tool",
                "tool_call_id": "toolu_01B",
                "content": [{"type": "text", "text": "n/a"}],
            },
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            },
            {"type": "function", "function": {"name": "no_params"}},
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_completion_tokens": 300,
        "max_tokens": 999,
        "stop": "END",
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "user-42",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    request, out = build(body)
    assert request.path == "/v1/messages"
    assert request.stream is True
    assert request.include_usage is True
    assert request.headers == [
        ("content-type", "application/json"),
        ("anthropic-version", "2023-06-01"),
    ]
    assert out == {
        "model": "claude-sonnet-4-5",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here and there?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/a.jpg"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "thinking",
                        "thinking": "Two cities: two calls.",
                        "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_01A",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    },
                    {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {}},
                ],
            },
            {
                # Both tool results and the next user text: one user turn, results first.
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "4°C"},
                    {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "n/a"},
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        "system": [
            {"type": "text", "text": "You are terse."},
            {"type": "text", "text": "Use metric units."},
        ],
        "max_tokens": 300,  # max_completion_tokens wins over the deprecated max_tokens
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
            {"name": "no_params", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "user-42"},
        "stream": True,
    }


def test_the_key_is_never_in_the_request_only_in_the_auth_headers() -> None:
    request, _ = build({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert "sk-ant" not in repr(request)
    assert ANTHROPIC.auth_headers("sk-ant-xyz") == [("x-api-key", "sk-ant-xyz")]


def test_options_give_version_beta_and_the_default_max_tokens() -> None:
    options = ProviderOptions(
        anthropic_version="2024-01-01", anthropic_beta=("a-2025", "b-2025"), max_tokens=1234
    )
    request, out = build(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, options=options
    )
    assert ("anthropic-version", "2024-01-01") in request.headers
    assert ("anthropic-beta", "a-2025,b-2025") in request.headers
    assert out["max_tokens"] == 1234
    _, out = build({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert out["max_tokens"] == 4096
    assert "stream" not in out


def test_model_and_stream_can_be_overridden_by_the_caller_of_the_translation() -> None:
    request, out = build(
        {"model": "public-name", "messages": [{"role": "user", "content": "hi"}]},
        model="claude-upstream",
        stream=True,
    )
    assert out["model"] == "claude-upstream"
    assert out["stream"] is True
    assert request.stream


def test_a_mapping_body_is_accepted_as_well_as_bytes() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert ANTHROPIC.build_request(body).body == build(body)[0].body


@pytest.mark.parametrize(
    ("effort", "limit", "budget", "max_tokens"),
    [
        ("low", None, 2048, 2048 + 4096),  # no caller limit: the budget plus the default
        ("high", 30000, 24576, 30000),
        ("high", 8000, 7999, 8000),  # the budget stays below the caller's limit
        ("minimal", 2000, 1024, 2000),
    ],
)
def test_reasoning_effort_becomes_a_thinking_budget(
    effort: str, limit: int | None, budget: int, max_tokens: int
) -> None:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    body["reasoning_effort"] = effort
    if limit is not None:
        body["max_completion_tokens"] = limit
    _, out = build(body)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert out["max_tokens"] == max_tokens


def test_reasoning_effort_none_sends_no_thinking() -> None:
    _, out = build(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "none"}
    )
    assert "thinking" not in out


def test_response_format_json_schema_becomes_output_config() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    }
    _, out = build(body)
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools}
    _, out = build({**body, "tool_choice": choice})
    assert out["tool_choice"] == expected
    _, out = build({**body, "parallel_tool_calls": False})
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_reasoning_without_its_signature_is_not_sent_back() -> None:
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "y", "reasoning_content": "unsigned"},
        {"role": "user", "content": "z"},
    ]
    _, out = build({"model": "m", "messages": messages})
    assert out["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "y"}]}


USER = [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"n": 2}, "n", "unsupported_parameter"),
        ({"logprobs": True}, "logprobs", "unsupported_parameter"),
        ({"top_logprobs": 3}, "top_logprobs", "unsupported_parameter"),
        ({"logit_bias": {"50256": -100}}, "logit_bias", "unsupported_parameter"),
        ({"functions": [{"name": "f"}]}, "functions", "unsupported_parameter"),
        ({"audio": {"voice": "alloy"}}, "audio", "unsupported_parameter"),
        ({"modalities": ["text", "audio"]}, "audio", "unsupported_parameter"),
        ({"prediction": {"type": "content"}}, "prediction", "unsupported_parameter"),
        ({"presence_penalty": 0.5}, "presence_penalty", "unsupported_parameter"),
        ({"frequency_penalty": 0.1}, "frequency_penalty", "unsupported_parameter"),
        ({"temperature": 1.5}, "temperature", "unsupported_value"),
        ({"response_format": {"type": "json_object"}}, "response_format", "unsupported_value"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort", "invalid_value"),
        ({"reasoning_effort": "low", "max_tokens": 500}, "reasoning_effort", "unsupported_value"),
        ({"reasoning_effort": "low", "temperature": 0.3}, "temperature", "unsupported_value"),
        ({"tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "unsupported_value"),
        ({"messages": []}, "messages", "invalid_value"),
        (
            {"messages": [{"role": "function", "content": "x"}]},
            "messages[0].role",
            "unsupported_value",
        ),
        ({"messages": "hello"}, "messages", "invalid_value"),
        ({"max_tokens": "ten"}, "max_tokens", "invalid_value"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content[0].type",
            "unsupported_value",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png,raw"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
            "invalid_value",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "t", "function": {"name": "f", "arguments": "{oops"}}
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
            "invalid_value",
        ),
    ],
)
def test_what_cannot_be_translated_is_a_400_naming_the_field(
    extra: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(TranslationError) as caught:
        build({"model": "m", "messages": USER, **extra})
    error = caught.value
    assert (error.status, error.param, error.code) == (400, param, code)
    body = json.loads(error.openai_body())["error"]
    assert body == {
        "message": error.message,
        "type": "invalid_request_error",
        "param": param,
        "code": code,
    }
    assert param.split("[")[0].split(".")[0] in error.message or param in error.message
    assert json.loads(error.anthropic_body()) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": error.message},
    }


def test_a_body_that_is_not_json_is_a_400() -> None:
    with pytest.raises(TranslationError, match="not valid JSON"):
        ANTHROPIC.build_request(b"{nope")


def test_penalties_of_zero_are_accepted() -> None:
    _, out = build(
        {"model": "m", "messages": USER, "presence_penalty": 0, "frequency_penalty": 0.0}
    )
    assert "presence_penalty" not in out
