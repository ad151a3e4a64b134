"""The provider pipes with ``Client`` and ``AsyncClient`` against fake Anthropic and Gemini
upstreams on 127.0.0.1: what is sent, what comes back, and the faults."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest

import aifetch
from aifetch.openai import ChatCompletion, ChatCompletionChunk, ChatStream
from aifetch.providers import dialect
from tests.support import fake_anthropic as fa
from tests.support import fake_gemini as fg
from tests.support.fake_upstream import FakeUpstream

USER = [{"role": "user", "content": "Hello"}]
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    }
]


class Runner:
    """Runs one call with ``Client`` or ``AsyncClient`` (a fresh loop per call) and returns
    plain values, so each scenario is written once for both flavours."""

    def __init__(self, flavour: str, pipes: list[Any], **client: Any) -> None:
        self.flavour = flavour
        self.pipes = pipes
        self.client = client

    def _run(self, sync: Callable[[aifetch.Client], Any], run_async: Callable[[Any], Any]) -> Any:
        if self.flavour == "sync":
            with aifetch.Client(pipes=self.pipes, **self.client) as client:
                return sync(client)

        async def main() -> Any:
            async with aifetch.AsyncClient(pipes=self.pipes, **self.client) as client:
                return await run_async(client)

        return asyncio.run(main())

    def post(self, body: dict[str, Any], url: str = "/chat/completions") -> tuple[int, Any]:
        def sync(client: aifetch.Client) -> tuple[int, Any]:
            resp = client.post(url, json=body)
            return resp.status, resp.json()

        async def run_async(client: Any) -> tuple[int, Any]:
            resp = await client.post(url, json=body)
            return resp.status, await resp.json()

        return self._run(sync, run_async)

    def stream(self, body: dict[str, Any]) -> tuple[list[ChatCompletionChunk], ChatCompletion]:
        body = {**body, "stream": True}

        def sync(client: aifetch.Client) -> Any:
            with ChatStream(client.post("/chat/completions", json=body)) as stream:
                return list(stream), stream.final()

        async def run_async(client: Any) -> Any:
            async with ChatStream(await client.post("/chat/completions", json=body)) as stream:
                chunks = [chunk async for chunk in stream]
                return chunks, await stream.afinal()

        return self._run(sync, run_async)

    def error(self, body: dict[str, Any], stream: bool = False, **options: Any) -> Exception:
        try:
            if stream:
                self.stream(body)
            else:
                self.post(body, **options)
        except Exception as exc:
            return exc
        raise AssertionError("no error was raised")


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def claude() -> Iterator[tuple[FakeUpstream, fa.AnthropicAPI]]:
    api = fa.AnthropicAPI()
    with FakeUpstream(default=api) as up:
        yield up, api


@pytest.fixture
def gemini_up() -> Iterator[tuple[FakeUpstream, fg.GeminiAPI]]:
    api = fg.GeminiAPI()
    with FakeUpstream(default=api) as up:
        yield up, api


def anthropic_runner(
    flavour: str, up: FakeUpstream, key: str, *before: Any, **client: Any
) -> Runner:
    return Runner(flavour, [*before, aifetch.providers.anthropic(key, base_url=up.url)], **client)


def gemini_runner(flavour: str, up: FakeUpstream, key: str, **client: Any) -> Runner:
    return Runner(flavour, [aifetch.providers.gemini(key, base_url=up.url + "/v1beta")], **client)


# --- Anthropic ----------------------------------------------------------------------------------


def test_anthropic_non_stream(flavour: str, claude: Any) -> None:
    up, api = claude
    runner = anthropic_runner(
        flavour, up, api.key, aifetch.pipes.bearer("sk-openai-not-for-claude")
    )
    status, body = runner.post({"model": "claude-x", "messages": USER})
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Hello from the fake Claude"
    assert body["choices"][0]["finish_reason"] == "stop"
    sent = api.received[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.header("x-api-key") == api.key
    assert sent.header("anthropic-version") == "2023-06-01"
    assert sent.header("authorization") is None  # another API's credential is not passed on
    assert sent.json() == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "max_tokens": 4096,
    }


def test_anthropic_stream_reads_as_an_openai_stream(flavour: str, claude: Any) -> None:
    up, api = claude
    runner = anthropic_runner(flavour, up, api.key)
    chunks, final = runner.stream(
        {"model": "claude-x", "messages": USER, "stream_options": {"include_usage": True}}
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake Claude"
    assert (
        len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 4
    )  # as it arrived
    assert final.choices[0].message.content == text
    assert final.usage is not None
    assert final.usage.completion_tokens == 5
    assert api.received[-1].json()["stream"] is True
    _, final = runner.stream({"model": "claude-x", "messages": USER})
    assert final.usage is None  # not asked for: no usage chunk, as OpenAI does


def test_anthropic_tool_loop(flavour: str, claude: Any) -> None:
    up, api = claude
    runner = anthropic_runner(flavour, up, api.key)
    _, final = runner.stream({"model": "claude-x", "messages": USER, "tools": TOOLS})
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls
    assert message.tool_calls[0].function.name == "get_weather"
    call = message.tool_calls[0]
    turn = [
        *USER,
        msgspec.to_builtins(message),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"},
    ]
    status, body = runner.post({"model": "claude-x", "messages": turn, "tools": TOOLS})
    assert status == 200
    assert (
        body["choices"][0]["message"]["content"]
        == "Hello from the fake Claude (tool results: 18 degrees)"
    )
    sent = api.received[-1].json()["messages"]
    assert sent[1]["content"][-1] == {
        "type": "tool_use",
        "id": call.id,
        "name": "get_weather",
        "input": {},
    }
    assert sent[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees"}],
    }


def test_anthropic_thinking_signature_goes_back_on_the_next_turn(flavour: str, claude: Any) -> None:
    up, api = claude
    up.enqueue(fa.transcript("anthropic_thinking.sse"))
    runner = anthropic_runner(flavour, up, api.key)
    _, final = runner.stream({"model": "claude-x", "messages": USER, "reasoning_effort": "low"})
    message = final.choices[0].message
    assert message.reasoning_signature == "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."
    assert up.requests[-1].json()["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    runner.post({"model": "claude-x", "messages": [*USER, msgspec.to_builtins(message), *USER]})
    thinking = api.received[-1].json()["messages"][1]["content"][0]
    assert thinking["type"] == "thinking"
    assert thinking["signature"] == message.reasoning_signature
    assert thinking["thinking"] == message.reasoning_content


def test_anthropic_529_keeps_its_status_with_openai_fields(flavour: str, claude: Any) -> None:
    up, api = claude
    up.enqueue(fa.overloaded(retry_after="7"))
    error = anthropic_runner(flavour, up, api.key).error({"model": "m", "messages": USER})
    assert isinstance(error, aifetch.InternalServerError)
    assert (error.status, error.message, error.type, error.code) == (
        529,
        "Overloaded",
        "overloaded_error",
        "overloaded",
    )
    assert error.retry_after == 7.0
    assert error.request_id == fa.REQUEST_ID


def test_anthropic_529_is_retried_with_the_retryable_statuses(flavour: str, claude: Any) -> None:
    up, api = claude
    up.enqueue(fa.overloaded(retry_after="0"))
    retry = aifetch.pipes.retry(2, statuses=dialect("anthropic").retry_statuses)
    status, body = anthropic_runner(flavour, up, api.key, retry).post(
        {"model": "m", "messages": USER}
    )
    assert status == 200
    assert body["choices"][0]["message"]["content"]
    assert len(up.requests) == 2


def test_a_wrong_key_is_an_authentication_error_without_the_key(flavour: str, claude: Any) -> None:
    up, _ = claude
    error = anthropic_runner(flavour, up, "sk-ant-wrong-key-123456").error(
        {"model": "m", "messages": USER}
    )
    assert isinstance(error, aifetch.AuthenticationError)
    assert (error.message, error.code) == ("invalid x-api-key", "invalid_api_key")
    assert "sk-ant-wrong-key-123456" not in str(error) + repr(error)


def test_an_error_event_mid_stream_raises_stream_error(flavour: str, claude: Any) -> None:
    up, api = claude
    up.enqueue(fa.error_event_mid_stream())
    error = anthropic_runner(flavour, up, api.key).error(
        {"model": "m", "messages": USER}, stream=True
    )
    assert isinstance(error, aifetch.StreamError)
    assert (error.message, error.type) == ("Overloaded", "overloaded_error")


def test_a_stream_cut_short_is_incomplete_and_a_reset_a_network_error(
    flavour: str, claude: Any
) -> None:
    up, api = claude
    up.enqueue(fa.cut_mid_stream(events=6))
    error = anthropic_runner(flavour, up, api.key).error(
        {"model": "m", "messages": USER}, stream=True
    )
    assert isinstance(error, aifetch.IncompleteStreamError)
    up.enqueue(fa.cut_mid_stream(events=6, reset=True))
    error = anthropic_runner(flavour, up, api.key).error(
        {"model": "m", "messages": USER}, stream=True
    )
    assert isinstance(error, aifetch.NetworkError)


def test_a_slow_first_event_is_waited_for_within_the_idle_timeout(
    flavour: str, claude: Any
) -> None:
    up, api = claude
    up.enqueue(fa.slow_first_event(0.3))
    _, final = anthropic_runner(flavour, up, api.key).stream({"model": "m", "messages": USER})
    assert final.choices[0].message.content == "Hello!"
    up.enqueue(fa.slow_first_event(2.0))
    runner = anthropic_runner(flavour, up, api.key, timeout=aifetch.Timeout(idle=0.2))
    error = runner.error({"model": "m", "messages": USER}, stream=True)
    assert isinstance(error, aifetch.TimeoutError)
    assert error.phase == "idle"


def test_an_untranslatable_request_is_a_400_that_never_reaches_the_provider(
    flavour: str, claude: Any
) -> None:
    up, api = claude
    error = anthropic_runner(flavour, up, api.key).error({"model": "m", "messages": USER, "n": 2})
    assert isinstance(error, aifetch.BadRequestError)
    assert (error.param, error.code) == ("n", "unsupported_parameter")
    assert "'n'" in (error.message or "")
    assert api.received == []


def test_only_chat_completions_is_served(flavour: str, claude: Any) -> None:
    up, api = claude
    runner = anthropic_runner(flavour, up, api.key)
    error = runner.error({"model": "m", "input": "x"}, url=up.url + "/v1/embeddings")
    assert isinstance(error, aifetch.NotFoundError)
    assert api.received == []
    status, _ = runner.post(
        {"model": "m", "messages": USER}, url="https://api.openai.com/v1/chat/completions"
    )
    assert status == 200
    assert api.received


def test_the_pipe_repr_never_shows_the_key() -> None:
    spec = aifetch.providers.anthropic("sk-ant-secret-value-1")
    assert "sk-ant-secret-value-1" not in repr(spec)
    with pytest.raises(ValueError, match="api_key"):
        aifetch.providers.gemini("")


# --- Gemini -------------------------------------------------------------------------------------


def test_gemini_non_stream_and_the_key_only_in_its_header(flavour: str, gemini_up: Any) -> None:
    up, api = gemini_up
    status, body = gemini_runner(flavour, up, api.key).post(
        {"model": "gemini-2.5-flash", "messages": USER}
    )
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "Hello from the fake Gemini"
    assert body["model"] == fg.MODEL_VERSION
    assert body["id"] == fg.RESPONSE_ID
    sent = api.received[-1]
    assert sent.target == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.header("x-goog-api-key") == api.key
    assert api.key not in sent.target


def test_gemini_stream_and_tool_loop_with_its_signature(flavour: str, gemini_up: Any) -> None:
    up, api = gemini_up
    runner = gemini_runner(flavour, up, api.key)
    _chunks, final = runner.stream({"model": "gemini-3-pro", "messages": USER, "tools": TOOLS})
    assert api.received[-1].target == "/v1beta/models/gemini-3-pro:streamGenerateContent?alt=sse"
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.reasoning_signature == fg.SIGNATURE
    call = message.tool_calls[0] if message.tool_calls else None
    assert call is not None
    assert call.id == f"call_{fg.RESPONSE_ID}_0"
    turn = [
        *USER,
        msgspec.to_builtins(message),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 18}'},
    ]
    _, final = runner.stream({"model": "gemini-3-pro", "messages": turn, "tools": TOOLS})
    assert (
        final.choices[0].message.content
        == 'Hello from the fake Gemini (function results: {"temp":18})'
    )
    sent = api.received[-1].json()["contents"]
    assert sent[1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": {}}, "thoughtSignature": fg.SIGNATURE}
        ],
    }
    assert sent[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 18}}}],
    }


def test_gemini_errors(flavour: str, gemini_up: Any) -> None:
    up, api = gemini_up
    up.enqueue(fg.unavailable())
    error = gemini_runner(flavour, up, api.key).error({"model": "g", "messages": USER})
    assert isinstance(error, aifetch.InternalServerError)
    assert (error.status, error.code, error.type) == (503, "unavailable", "server_error")
    error = gemini_runner(flavour, up, "AIzaWrongKey0000000000").error(
        {"model": "g", "messages": USER}
    )
    assert isinstance(error, aifetch.BadRequestError)
    assert error.message == "API key not valid. Please pass a valid API key."
    assert "AIzaWrongKey0000000000" not in str(error)


def test_gemini_stream_faults(flavour: str, gemini_up: Any) -> None:
    up, api = gemini_up
    runner = gemini_runner(flavour, up, api.key)
    up.enqueue(fg.error_mid_stream())
    error = runner.error({"model": "g", "messages": USER}, stream=True)
    assert isinstance(error, aifetch.StreamError)
    assert error.code == "unavailable"
    up.enqueue(fg.cut_mid_stream(events=2))
    assert isinstance(
        runner.error({"model": "g", "messages": USER}, stream=True), aifetch.IncompleteStreamError
    )
    up.enqueue(fg.cut_mid_stream(events=1, reset=True))
    assert isinstance(
        runner.error({"model": "g", "messages": USER}, stream=True), aifetch.NetworkError
    )
    up.enqueue(fg.slow_first_event(0.2))
    _, final = runner.stream({"model": "g", "messages": USER})
    assert (
        final.choices[0].message.content
        == 'There are **3** "r"s in strawberry.\n\nst**r**awbe**rr**y'
    )
