"""Whole answers and error bodies: provider shape → OpenAI shape, status kept."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from aifetch.providers import ProviderUsage, dialect, openai_error_to_anthropic

ANTHROPIC = dialect("anthropic")
GEMINI = dialect("gemini")
CREATED = 1_700_000_000


def completion(id: str, model: str, message: dict[str, Any], finish: str, usage: Any) -> Any:
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    return {
        "id": id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [choice],
        "usage": usage,
    }


def usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> Any:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


# The API reference's example Message, and a tool-use turn with thinking and cache reads.
ANTHROPIC_TEXT = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Hi! My name is Claude."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 2095, "output_tokens": 503},
}
ANTHROPIC_TOOLS = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "Two calls.", "signature": "EqQBCgIYAhIM1gbc"},
        {"type": "text", "text": "I'll look both up."},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}},
        {
            "type": "server_tool_use",
            "id": "srvtoolu_1",
            "name": "web_search",
            "input": {"query": "x"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "cache_creation_input_tokens": 20,
        "cache_read_input_tokens": 300,
        "output_tokens": 50,
        "output_tokens_details": {"thinking_tokens": 12},
    },
}


def test_anthropic_text_message() -> None:
    body, reported = ANTHROPIC.translate_response(
        msgspec.json.encode(ANTHROPIC_TEXT), created=CREATED
    )
    message = {"role": "assistant", "content": "Hi! My name is Claude.", "refusal": None}
    expected = completion(
        "msg_013Zva2CMHLNnXjNJJKqJ2EF", "claude-sonnet-4-5", message, "stop", usage(2095, 503)
    )
    assert json.loads(body) == expected
    assert reported == ProviderUsage(2095, 503)


def test_anthropic_tool_use_with_thinking_and_cache() -> None:
    body, reported = ANTHROPIC.translate_response(
        msgspec.json.encode(ANTHROPIC_TOOLS), created=CREATED
    )
    calls = [
        {
            "id": "toolu_01A",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {
            "id": "toolu_01B",
            "type": "function",
            "function": {"name": "get_time", "arguments": "{}"},
        },
    ]
    message = {
        "role": "assistant",
        "content": "I'll look both up.",
        "refusal": None,
        "reasoning_content": "Two calls.",
        "reasoning_signature": "EqQBCgIYAhIM1gbc",
        "tool_calls": calls,
    }
    expected = completion(
        "msg_01Aq9w938a90dw8q", "claude-sonnet-4-5", message, "tool_calls", usage(330, 50, 300, 12)
    )
    assert json.loads(body) == expected
    assert reported == ProviderUsage(330, 50, 300, 12, 20)


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        ("something_new", "stop"),
    ],
)
def test_anthropic_stop_reasons(stop: str, finish: str) -> None:
    body, _ = ANTHROPIC.translate_response(
        msgspec.json.encode({**ANTHROPIC_TEXT, "stop_reason": stop})
    )
    assert json.loads(body)["choices"][0]["finish_reason"] == finish


GEMINI_TEXT = {
    "candidates": [
        {
            "content": {
                "parts": [
                    {"text": "Thinking about r's.", "thought": True},
                    {"text": "There are **3** "},
                    {"text": "r's.", "thoughtSignature": "EqsFCqgF"},
                ],
                "role": "model",
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 9,
        "candidatesTokenCount": 23,
        "totalTokenCount": 217,
        "cachedContentTokenCount": 4,
        "thoughtsTokenCount": 185,
    },
    "modelVersion": "gemini-3-pro-preview",
    "responseId": "bH6LaZW8Fp_3nsEPqtaSwQ4",
}


def test_gemini_text_with_thoughts() -> None:
    body, reported = GEMINI.translate_response(msgspec.json.encode(GEMINI_TEXT), created=CREATED)
    message = {
        "role": "assistant",
        "content": "There are **3** r's.",
        "refusal": None,
        "reasoning_content": "Thinking about r's.",
        "reasoning_signature": "EqsFCqgF",
    }
    expected = completion(
        "bH6LaZW8Fp_3nsEPqtaSwQ4", "gemini-3-pro-preview", message, "stop", usage(9, 208, 4, 185)
    )
    assert json.loads(body) == expected
    assert reported == ProviderUsage(9, 208, 4, 185)


def test_gemini_function_calls_get_stable_ids_and_the_same_as_streamed() -> None:
    data = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "AY89",
                        },
                        {
                            "functionCall": {
                                "name": "get_weather",
                                "args": {"city": "Tokyo"},
                                "id": "given-id",
                            }
                        },
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
            }
        ],
        "responseId": "QHiLaa6L",
        "modelVersion": "gemini-3.1-flash-lite",
    }
    body, reported = GEMINI.translate_response(msgspec.json.encode(data), created=CREATED)
    message = json.loads(body)["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    assert message["message"]["content"] is None
    assert message["message"]["reasoning_signature"] == "AY89"
    assert [c["id"] for c in message["message"]["tool_calls"]] == ["call_QHiLaa6L_0", "given-id"]
    assert message["message"]["tool_calls"][1]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Tokyo"}',
    }
    assert json.loads(body)["usage"] is None
    assert reported is None


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("OTHER", "stop"),
        ("LANGUAGE", "stop"),
    ],
)
def test_gemini_finish_reasons(reason: str, finish: str) -> None:
    data = {"candidates": [{**GEMINI_TEXT["candidates"][0], "finishReason": reason}]}  # type: ignore[index]
    body, _ = GEMINI.translate_response(msgspec.json.encode(data))
    assert json.loads(body)["choices"][0]["finish_reason"] == finish


def test_gemini_blocked_prompt() -> None:
    body, _ = GEMINI.translate_response(b'{"promptFeedback":{"blockReason":"SAFETY"}}')
    choice = json.loads(body)["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] == ""


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            529,
            b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}',
            {
                "message": "Overloaded",
                "type": "overloaded_error",
                "param": None,
                "code": "overloaded",
            },
        ),
        (
            401,
            b'{"type":"error","error":{"type":"authentication_error",'
            b'"message":"invalid x-api-key"}}',
            {
                "message": "invalid x-api-key",
                "type": "authentication_error",
                "param": None,
                "code": "invalid_api_key",
            },
        ),
        (
            429,
            b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}',
            {
                "message": "slow down",
                "type": "rate_limit_error",
                "param": None,
                "code": "rate_limit_exceeded",
            },
        ),
        (
            500,
            b'{"type":"error","error":{"type":"api_error","message":"Internal server error"}}',
            {
                "message": "Internal server error",
                "type": "server_error",
                "param": None,
                "code": None,
            },
        ),
        (
            502,
            b"<html>\n  <body>Bad   gateway</body></html>",
            {
                "message": "<html> <body>Bad gateway</body></html>",
                "type": "server_error",
                "param": None,
                "code": None,
            },
        ),
    ],
)
def test_anthropic_errors(status: int, body: bytes, expected: dict[str, Any]) -> None:
    kept, out = ANTHROPIC.translate_error(status, body)
    assert kept == status
    assert json.loads(out) == {"error": expected}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            b'{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.",'
            b'"status":"INVALID_ARGUMENT"}}',
            {
                "message": "API key not valid. Please pass a valid API key.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            },
        ),
        (
            429,
            b'[{"error":{"code":429,"message":"Resource has been exhausted",'
            b'"status":"RESOURCE_EXHAUSTED"}}]',
            {
                "message": "Resource has been exhausted",
                "type": "rate_limit_error",
                "param": None,
                "code": "rate_limit_exceeded",
            },
        ),
        (
            503,
            b'{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}',
            {
                "message": "The model is overloaded.",
                "type": "server_error",
                "param": None,
                "code": "unavailable",
            },
        ),
        (
            404,
            b"",
            {
                "message": "the upstream answered with an empty error body",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            },
        ),
    ],
)
def test_gemini_errors(status: int, body: bytes, expected: dict[str, Any]) -> None:
    kept, out = GEMINI.translate_error(status, body)
    assert kept == status
    assert json.loads(out) == {"error": expected}


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (503, "api_error"),
        (529, "overloaded_error"),
    ],
)
def test_openai_errors_for_an_anthropic_caller(status: int, kind: str) -> None:
    body = b'{"error":{"message":"no","type":"x","param":null,"code":null}}'
    kept, out = openai_error_to_anthropic(status, body)
    assert kept == status
    assert json.loads(out) == {"type": "error", "error": {"type": kind, "message": "no"}}


def test_retry_statuses_include_anthropic_overload() -> None:
    assert 529 in ANTHROPIC.retry_statuses
    assert 429 in GEMINI.retry_statuses
    assert 400 not in ANTHROPIC.retry_statuses
