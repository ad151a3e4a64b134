"""The built-in mock refuses what OpenAI refuses, with OpenAI's code, param and wording,
seen through ``aifetch serve``'s default config by the official ``openai`` SDK."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import openai
import pytest

from aifetch.gateway import GatewayConfig, default_config
from tests.gateway.conftest import RunningGateway

MODEL = "mock-gpt"
USER = {"role": "user", "content": "Hello"}

# (route, body without "model", param, code, message)
CHAT_REFUSALS: list[tuple[str, dict[str, Any], str, str, str]] = [
    (
        "chat",
        {},
        "messages",
        "missing_required_parameter",
        "Missing required parameter: 'messages'.",
    ),
    *(
        (
            "chat",
            {"messages": value},
            "messages",
            "invalid_type",
            f"Invalid type for 'messages': expected an array of objects, but got {kind} instead.",
        )
        for value, kind in [
            ("Hello", "a string"),
            (3, "an integer"),
            (2.5, "a decimal"),
            (True, "a boolean"),
            (None, "null"),
            (USER, "an object"),
        ]
    ),
    (
        "chat",
        {"messages": []},
        "messages",
        "empty_array",
        "Invalid 'messages': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead.",
    ),
    (
        "chat",
        {"messages": [USER, "Hello"]},
        "messages[1]",
        "invalid_type",
        "Invalid type for 'messages[1]': expected an object, but got a string instead.",
    ),
    *(
        (
            "chat",
            {"messages": [USER] * i + [{"content": "Hello"}]},
            f"messages[{i}].role",
            "missing_required_parameter",
            f"Missing required parameter: 'messages[{i}].role'.",
        )
        for i in range(3)
    ),
    (
        "chat",
        {"messages": [USER, {"role": "robot", "content": "Hello"}]},
        "messages[1].role",
        "invalid_value",
        "Invalid value: 'robot'. Supported values are: 'system', 'assistant', 'user', "
        "'function', 'tool', and 'developer'.",
    ),
    (
        "chat",
        {"messages": [{"role": 7, "content": "Hello"}]},
        "messages[0].role",
        "invalid_type",
        "Invalid type for 'messages[0].role': expected a string, but got an integer instead.",
    ),
    *(
        (
            "chat",
            {"messages": [{"role": role}]},
            "messages[0].content",
            "missing_required_parameter",
            "Missing required parameter: 'messages[0].content'.",
        )
        for role in ("system", "developer", "user", "tool")
    ),
    (
        "chat",
        {"messages": [{"role": "user", "content": {"text": "Hello"}}]},
        "messages[0].content",
        "invalid_type",
        "Invalid type for 'messages[0].content': expected one of a string or array of "
        "objects, but got an object instead.",
    ),
]

TOKENS = "one of a string, array of strings, array of integers, or array of arrays of integers"
TEXT_REFUSALS: list[tuple[str, dict[str, Any], str, str, str]] = [
    *(
        (route, {}, field, "missing_required_parameter", f"Missing required parameter: '{field}'.")
        for route, field in [("completions", "prompt"), ("embeddings", "input")]
    ),
    *(
        (
            route,
            {field: value},
            field,
            "invalid_type",
            f"Invalid type for '{field}': expected {TOKENS}, but got {kind} instead.",
        )
        for route, field in [("completions", "prompt"), ("embeddings", "input")]
        for value, kind in [
            ({"text": "Hello"}, "an object"),
            (4.5, "a decimal"),
            (None, "null"),
            (["Hello", 1], "an array"),
            ([[1, 2], "Hello"], "an array"),
        ]
    ),
    *(
        (
            route,
            {field: []},
            field,
            "empty_array",
            f"Invalid '{field}': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
        )
        for route, field in [("completions", "prompt"), ("embeddings", "input")]
    ),
]

# Accepted by OpenAI, and so by the mock.
ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("chat", {"messages": [USER]}),
    (
        "chat",
        {
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "assistant"},
                {"role": "tool", "content": "42", "tool_call_id": "c1"},
            ]
        },
    ),
    ("completions", {"prompt": "Say hi"}),
    ("completions", {"prompt": ["Say", "hi"]}),
    ("completions", {"prompt": [1, 2, 3]}),
    ("embeddings", {"input": [[1, 2], [3]]}),
    ("embeddings", {"input": "Hello"}),
]

_PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}


@pytest.fixture
def default_gateway(
    serve: Callable[[GatewayConfig], RunningGateway],
) -> RunningGateway:
    """What ``aifetch serve`` runs without a config: ``mock-gpt`` on the built-in mock."""
    return serve(default_config())


@pytest.fixture
def sdk(default_gateway: RunningGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=default_gateway.url + "/v1", api_key="unused", max_retries=0
    ) as client:
        yield client


def _post(sdk: openai.OpenAI, route: str, body: dict[str, Any]) -> object:
    # The SDK's own request path (its typed methods would refuse some bodies before sending).
    return sdk.post(_PATHS[route], body={"model": MODEL, **body}, cast_to=object)


# Each refusal as a plain call and, where the route streams, as a stream call.
REFUSALS = [
    (*case, stream)
    for case in CHAT_REFUSALS + TEXT_REFUSALS
    for stream in ((False,) if case[0] == "embeddings" else (False, True))
]


@pytest.mark.parametrize(
    ("route", "body", "param", "code", "message", "stream"),
    REFUSALS,
    ids=[
        f"{r[0]}-{r[2]}-{r[3]}-{'stream' if r[5] else 'plain'}-{i}" for i, r in enumerate(REFUSALS)
    ],
)
def test_the_mock_refuses_as_openai_does(
    sdk: openai.OpenAI,
    route: str,
    body: dict[str, Any],
    param: str,
    code: str,
    message: str,
    stream: bool,
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _post(sdk, route, {**body, "stream": stream})
    error = info.value
    assert error.status_code == 400
    assert (error.code, error.param, error.type) == (code, param, "invalid_request_error")
    assert error.message.endswith(message), error.message


@pytest.mark.parametrize(("route", "body"), ACCEPTED)
def test_the_mock_answers_what_openai_accepts(
    sdk: openai.OpenAI, route: str, body: dict[str, Any]
) -> None:
    answer = _post(sdk, route, body)
    assert isinstance(answer, dict)
    assert answer["object"] in ("chat.completion", "text_completion", "list")


def test_the_typed_sdk_calls_get_the_same_error(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model=MODEL, messages="Hello")  # type: ignore[arg-type]
    assert (info.value.code, info.value.param) == ("invalid_type", "messages")
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user"}],  # type: ignore[list-item,typeddict-item]
            stream=True,
        )
    assert (info.value.code, info.value.param) == (
        "missing_required_parameter",
        "messages[0].content",
    )
    with pytest.raises(openai.BadRequestError) as info:
        sdk.embeddings.create(model=MODEL, input=[])
    assert (info.value.code, info.value.param) == ("empty_array", "input")


def test_a_mock_stream_stops_when_its_caller_leaves(
    serve: Callable[[GatewayConfig], RunningGateway],
) -> None:
    # 40 chunks 0.25 s apart: 10 s if nothing stops it.
    config = default_config()
    mock = msgspec.structs.replace(config.upstreams["mock"].mock, chunks=40, interval=0.25)
    upstream = msgspec.structs.replace(config.upstreams["mock"], mock=mock)
    gateway = serve(msgspec.structs.replace(config, upstreams={"mock": upstream}))
    body = json.dumps({"model": MODEL, "messages": [USER], "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        sock.settimeout(10)
        received = b""
        while b"data: " not in received:
            received += sock.recv(65536)
    app = gateway.server.app
    assert app is not None
    left = time.monotonic()
    while app.in_flight:  # the call ends with its mock body, not after the 10 s answer
        assert time.monotonic() - left < 2, "the mock kept streaming for a caller that left"
        time.sleep(0.02)
