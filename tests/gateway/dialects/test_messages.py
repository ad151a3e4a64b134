"""``/v1/messages`` with the official ``anthropic`` package: in front of an OpenAI-kind
upstream (translated both ways), an Anthropic-kind one (relayed byte-exact), a Gemini-kind
one and the built-in mock; tools and a multi-turn tool loop; every error Anthropic-shaped;
no false completion after the commit point."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import msgspec
import pytest

from tests.support import fake_anthropic
from tests.support.fake_anthropic import transcript
from tests.support.fake_tool_chat import ARGUMENTS, CALL_ID
from tests.support.fake_upstream import (
    chat_stream,
    reset_mid_stream,
    server_error,
    slow_first_byte,
)

from ..conftest import RunningGateway
from .conftest import (
    ANTHROPIC_KEY,
    CALLER_KEY,
    CONFIG_BETA,
    OPENAI_KEY,
    AccessLines,
    Fakes,
    Serve,
    dialect_config,
    sse_events,
    tokens,
)

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
HI = [{"role": "user", "content": "Hi there"}]


def client(gateway: RunningGateway, key: str = CALLER_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=10)


def post(
    gateway: RunningGateway,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    path: str = "/v1/messages",
) -> tuple[int, httpx.Headers, bytes]:
    """The raw answer, as the gateway framed it."""
    sent = {"x-api-key": CALLER_KEY, "anthropic-version": "2023-06-01", **(headers or {})}
    with httpx.stream("POST", gateway.url + path, json=body, headers=sent, timeout=10) as response:
        return response.status_code, response.headers, b"".join(response.iter_raw())


def check_stream_shape(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """A valid Anthropic event stream: message_start first, blocks opened in index order
    and stopped, message_delta then message_stop last."""
    events = [(name, json.loads(data)) for name, data in sse_events(data)]
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start", names
    assert names[-2:] == ["message_delta", "message_stop"], names
    open_index, next_index = None, 0
    for name, payload in events:
        assert payload["type"] == name
        if name == "content_block_start":
            assert open_index is None
            assert payload["index"] == next_index
            open_index, next_index = next_index, next_index + 1
        elif name == "content_block_delta":
            assert payload["index"] == open_index
        elif name == "content_block_stop":
            assert payload["index"] == open_index
            open_index = None
    assert open_index is None
    return events


# --------------------------------------------------------------------- an openai upstream


def test_create_against_an_openai_upstream(
    gateway: RunningGateway, fakes: Fakes, access: AccessLines
) -> None:
    mark = access.settle()
    with client(gateway) as claude:
        message = claude.messages.create(
            model="gpt", max_tokens=64, system="Be brief.", messages=HI
        )
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Hello from the tool chat"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.model == "gpt"
    sent = fakes.tools.received[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.header("authorization") == f"Bearer {OPENAI_KEY}"
    assert sent.header("x-api-key") is None
    payload = sent.json()
    assert payload["model"] == "fake-model"
    assert payload["max_completion_tokens"] == 64
    assert payload["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
    ]
    line = access.after(mark)[0]
    assert (line["path"], line["dialect"], line["status"], line["upstream"]) == (
        "/v1/messages",
        "anthropic",
        200,
        "oa",
    )
    assert message.usage.input_tokens == line["prompt_tokens"] > 0
    assert message.usage.output_tokens == line["completion_tokens"] > 0


def test_stream_against_an_openai_upstream(
    gateway: RunningGateway, fakes: Fakes, access: AccessLines
) -> None:
    mark = access.settle()
    with (
        client(gateway) as claude,
        claude.messages.stream(model="gpt", max_tokens=64, messages=HI) as stream,
    ):
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the tool chat"
    assert final.stop_reason == "end_turn"
    line = access.after(mark)[0]
    assert line["stream"] is True
    assert line["dialect"] == "anthropic"
    # The usage the upstream reported, in the last message_delta and in the log alike.
    assert final.usage.output_tokens == line["completion_tokens"] > 0
    assert final.usage.input_tokens == line["prompt_tokens"] > 0
    # The chat request asked for the usage chunk the message_delta needs.
    assert fakes.tools.received[-1].json()["stream_options"] == {"include_usage": True}


def test_the_stream_is_a_valid_anthropic_event_stream(gateway: RunningGateway) -> None:
    body = {"model": "gpt", "max_tokens": 64, "messages": HI, "stream": True}
    body["tools"] = [WEATHER]
    status, headers, data = post(gateway, body)
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = check_stream_shape(data)
    tool_starts = [p for n, p in events if n == "content_block_start"]
    assert tool_starts[-1]["content_block"]["type"] == "tool_use"
    assert tool_starts[-1]["content_block"]["id"] == CALL_ID
    pieces = [
        p["delta"]["partial_json"]
        for n, p in events
        if n == "content_block_delta" and p["delta"]["type"] == "input_json_delta"
    ]
    # The arguments arrive as the upstream streamed them, piece by piece, not at the end.
    assert len(pieces) > 1
    assert "".join(pieces) == ARGUMENTS
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_a_tool_loop_against_an_openai_upstream(
    gateway: RunningGateway, fakes: Fakes, stream: bool
) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    with client(gateway) as claude:
        first = _turn(claude, "gpt", messages, stream)
        assert first.stop_reason == "tool_use"
        call = next(block for block in first.content if block.type == "tool_use")
        assert (call.id, call.name, call.input) == (CALL_ID, "get_weather", json.loads(ARGUMENTS))
        messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
        messages.append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21°C"}],
            }
        )
        second = _turn(claude, "gpt", messages, stream)
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "Tool results: 21°C"  # type: ignore[union-attr]
    # The second turn reached the upstream as an OpenAI tool loop.
    sent = fakes.tools.received[-1].json()["messages"]
    assert sent[1]["tool_calls"][0]["id"] == CALL_ID
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == json.loads(ARGUMENTS)
    assert sent[2] == {"role": "tool", "tool_call_id": CALL_ID, "content": "21°C"}


def _turn(
    claude: anthropic.Anthropic, model: str, messages: list[dict[str, Any]], stream: bool
) -> Any:
    if not stream:
        return claude.messages.create(
            model=model,
            max_tokens=64,
            messages=messages,
            tools=[WEATHER],  # type: ignore[arg-type]
        )
    with claude.messages.stream(
        model=model,
        max_tokens=64,
        messages=messages,
        tools=[WEATHER],  # type: ignore[arg-type]
    ) as live:
        return live.get_final_message()


# --------------------------------------------------------------------- an anthropic upstream


def test_a_stream_to_an_anthropic_upstream_is_relayed_byte_exact(
    gateway: RunningGateway, fakes: Fakes
) -> None:
    body = {"model": "claude", "max_tokens": 64, "messages": HI, "stream": True}
    raw = msgspec.json.encode(body)
    status, _, data = post(gateway, body, {"anthropic-beta": "caller-beta"})
    assert status == 200
    assert data == b"".join(fakes.claude.sent)  # the upstream's bytes, as it sent them
    sent = fakes.claude.received[-1]
    assert sent.path == "/v1/messages"
    # The caller's own request, only the model renamed: not translated there and back.
    assert sent.body == raw.replace(b'"model":"claude"', b'"model":"claude-fake-1"')
    assert sent.header("x-api-key") == ANTHROPIC_KEY
    assert sent.header("anthropic-version") == "2023-06-01"
    assert sent.header("anthropic-beta") == f"{CONFIG_BETA},caller-beta"
    assert CALLER_KEY not in repr(sent.headers)


def test_a_whole_answer_from_an_anthropic_upstream_is_relayed_byte_exact(
    gateway: RunningGateway, fakes: Fakes, access: AccessLines
) -> None:
    answer = {
        "id": "msg_01Fixed",
        "type": "message",
        "role": "assistant",
        "model": "claude-fake-1",
        "content": [{"type": "text", "text": "Exactly these bytes"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 7,
            "cache_creation_input_tokens": 11,
            "cache_read_input_tokens": 13,
            "output_tokens": 17,
        },
    }
    fakes.anthropic.enqueue(fake_anthropic.Message(answer))
    mark = access.settle()
    status, _, data = post(gateway, {"model": "claude", "max_tokens": 64, "messages": HI})
    assert status == 200
    assert data == msgspec.json.encode(answer)
    line = access.after(mark)[0]
    # Anthropic's input_tokens leaves out the cache; the prompt counted is all of it.
    assert (line["prompt_tokens"], line["cached_tokens"], line["completion_tokens"]) == (
        7 + 11 + 13,
        13,
        17,
    )


def test_native_stream_usage_counts_the_cache(
    gateway: RunningGateway, fakes: Fakes, access: AccessLines
) -> None:
    fakes.anthropic.enqueue(transcript("anthropic_cache_usage.sse"))
    before = tokens(gateway, "claude")
    mark = access.settle()
    status, _, data = post(
        gateway, {"model": "claude", "max_tokens": 64, "messages": HI, "stream": True}
    )
    assert status == 200
    assert data == fake_anthropic.load("anthropic_cache_usage.sse")
    line = access.after(mark)[0]
    # message_start: 2 uncached, 3068 written to the cache; message_delta's cumulative
    # figures complete it (the transcript's last usage).
    final = [json.loads(d) for n, d in sse_events(data) if n == "message_delta"][-1]["usage"]
    start = next(json.loads(d) for n, d in sse_events(data) if n == "message_start")
    first = start["message"]["usage"]
    usage = {**first, **{k: v for k, v in final.items() if v is not None}}
    prompt = (
        usage["input_tokens"]
        + usage["cache_creation_input_tokens"]
        + usage["cache_read_input_tokens"]
    )
    assert line["prompt_tokens"] == prompt
    assert line["cached_tokens"] == usage["cache_read_input_tokens"]
    assert line["completion_tokens"] == usage["output_tokens"]
    after = tokens(gateway, "claude")
    assert after["prompt"] - before.get("prompt", 0) == prompt
    assert after["completion"] - before.get("completion", 0) == usage["output_tokens"]


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_a_tool_loop_against_an_anthropic_upstream(
    gateway: RunningGateway, fakes: Fakes, stream: bool
) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    with client(gateway) as claude:
        first = _turn(claude, "claude", messages, stream)
        assert first.stop_reason == "tool_use"
        call = next(block for block in first.content if block.type == "tool_use")
        assert (call.id, call.name) == ("toolu_01Fake", "get_weather")
        messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
        messages.append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
            }
        )
        second = _turn(claude, "claude", messages, stream)
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "Hello from the fake Claude (tool results: sunny)"  # type: ignore[union-attr]
    assert all(r.path == "/v1/messages" for r in fakes.claude.received)


def test_count_tokens_goes_to_the_anthropic_upstream(gateway: RunningGateway, fakes: Fakes) -> None:
    with client(gateway) as claude:
        counted = claude.messages.count_tokens(model="claude", messages=HI)  # type: ignore[arg-type]
    sent = fakes.claude.received[-1]
    assert sent.path == "/v1/messages/count_tokens"
    assert sent.json()["model"] == "claude-fake-1"
    assert sent.header("x-api-key") == ANTHROPIC_KEY
    assert counted.input_tokens == len(sent.body) // 4


def test_count_tokens_without_an_anthropic_target_is_a_clear_404(
    gateway: RunningGateway,
) -> None:
    with client(gateway) as claude, pytest.raises(anthropic.NotFoundError) as info:
        claude.messages.count_tokens(model="gpt", messages=HI)  # type: ignore[arg-type]
    assert info.value.body == {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": "The model 'gpt' has no anthropic upstream, and only Anthropic's API "
            "counts the tokens of a Messages request.",
        },
    }


# --------------------------------------------------------------------- gemini, mock, fallback


@pytest.mark.parametrize("model", ["gem", "mock-gpt"])
def test_other_upstreams_answer_messages(gateway: RunningGateway, model: str) -> None:
    expected = {
        "gem": "Hello from the fake Gemini",
        "mock-gpt": "Hello from the aifetch mock provider. It streams deterministic chunks.",
    }[model]
    with client(gateway) as claude:
        message = claude.messages.create(model=model, max_tokens=64, messages=HI)
        with claude.messages.stream(model=model, max_tokens=64, messages=HI) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
    assert message.content[0].text == streamed == expected  # type: ignore[union-attr]
    assert final.usage.output_tokens > 0


def test_a_fallback_from_an_anthropic_to_an_openai_upstream_is_translated(
    gateway: RunningGateway, fakes: Fakes
) -> None:
    fakes.anthropic.enqueue(fake_anthropic.overloaded(), times=2)
    with client(gateway) as claude:
        message = claude.messages.create(model="claude-then-gpt", max_tokens=64, messages=HI)
        with claude.messages.stream(model="claude-then-gpt", max_tokens=64, messages=HI) as stream:
            text = "".join(stream.text_stream)
    # The native attempt failed; the answer came from the openai target, translated back.
    assert message.content[0].text == text == "Hello from the tool chat"  # type: ignore[union-attr]
    assert len(fakes.anthropic.requests) == 2
    assert len(fakes.openai.requests) == 2


# --------------------------------------------------------------------- errors


def test_every_error_is_anthropic_shaped(gateway: RunningGateway, fakes: Fakes) -> None:
    with (
        client(gateway, key="gw-wrong-key") as claude,
        pytest.raises(anthropic.AuthenticationError) as wrong,
    ):
        claude.messages.create(model="gpt", max_tokens=8, messages=HI)
    assert wrong.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Incorrect API key provided."},
    }
    status, _, data = post(gateway, {"model": "gpt", "max_tokens": 8, "messages": HI},
                           {"x-api-key": ""})  # fmt: skip
    assert status == 401
    assert json.loads(data)["error"]["type"] == "authentication_error"
    with client(gateway) as claude:
        with pytest.raises(anthropic.NotFoundError) as unknown:
            claude.messages.create(model="nope", max_tokens=8, messages=HI)
        assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
        with pytest.raises(anthropic.BadRequestError) as refused:
            claude.messages.create(
                model="gpt",
                max_tokens=8,
                messages=HI,
                tools=[{"type": "web_search_20250305", "name": "web_search"}],
            )
        assert refused.value.body["type"] == "error"  # type: ignore[index]
        assert "web_search_20250305" in refused.value.body["error"]["message"]  # type: ignore[index]
        fakes.anthropic.enqueue(fake_anthropic.overloaded(), times=2)
        with pytest.raises(anthropic.APIStatusError) as overloaded:
            claude.messages.create(model="claude", max_tokens=8, messages=HI)
    assert overloaded.value.status_code == 529
    assert overloaded.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert fakes.tools.received == []  # nothing refused reached an upstream


def test_an_openai_upstream_error_is_anthropic_shaped(
    gateway: RunningGateway, fakes: Fakes
) -> None:
    fakes.openai.enqueue(server_error(503), times=2)  # model gpt tries twice
    with client(gateway) as claude, pytest.raises(anthropic.APIStatusError) as info:
        claude.messages.create(model="gpt", max_tokens=8, messages=HI)
    assert info.value.status_code == 503
    assert info.value.body["type"] == "error"  # type: ignore[index]
    assert info.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def _no_false_completion(data: bytes) -> dict[str, Any]:
    """The stream ended with an Anthropic error event and no message_stop; the error."""
    events = sse_events(data)
    names = [name for name, _ in events]
    assert "message_stop" not in names, names
    assert names[-1] == "error", names
    error = json.loads(events[-1][1])
    assert error["type"] == "error"
    return dict(error["error"])


def test_a_failure_after_the_commit_point_is_an_error_event_never_a_message_stop(
    gateway: RunningGateway, fakes: Fakes
) -> None:
    body = {"model": "gpt", "max_tokens": 64, "messages": HI, "stream": True}
    # An openai upstream that breaks its connection mid-stream (translated).
    source = chat_stream(content="one two three four five six", n_chunks=6)
    fakes.openai.enqueue(reset_mid_stream(after_events=3, source=source))
    status, _, data = post(gateway, body)
    assert status == 200
    assert b"content_block_delta" in data  # part of the answer did reach the caller
    assert _no_false_completion(data)["type"] == "api_error"
    # An anthropic upstream's own error event mid-stream (relayed).
    body["model"] = "claude"
    fakes.anthropic.enqueue(fake_anthropic.error_event_mid_stream())
    status, _, data = post(gateway, body)
    assert status == 200
    assert "Overloaded" in _no_false_completion(data)["message"]
    # An anthropic upstream whose stream ends before message_stop (relayed).
    fakes.anthropic.enqueue(fake_anthropic.cut_mid_stream(events=4))
    status, _, data = post(gateway, body)
    assert status == 200
    assert "message_stop" in _no_false_completion(data)["message"]
    # The SDK raises rather than returning a truncated message.
    fakes.anthropic.enqueue(fake_anthropic.cut_mid_stream(events=4, reset=True))
    with (
        client(gateway) as claude,
        pytest.raises(anthropic.APIStatusError),
        claude.messages.stream(model="claude", max_tokens=64, messages=HI) as stream,
    ):
        stream.get_final_message()


def test_an_error_before_the_commit_point_falls_back(gateway: RunningGateway, fakes: Fakes) -> None:
    # message_start, then an error event: nothing reached the caller, so the next try runs.
    start = {"type": "message_start", "message": {"id": "msg_x", "type": "message",
             "role": "assistant", "model": "claude-fake-1", "content": [],
             "usage": {"input_tokens": 3, "output_tokens": 1}}}  # fmt: skip
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    early = fake_anthropic.sse("message_start", start) + fake_anthropic.sse("error", error)
    fakes.anthropic.enqueue(fake_anthropic.Transcript(early))
    status, _, data = post(
        gateway, {"model": "claude", "max_tokens": 64, "messages": HI, "stream": True}
    )
    assert status == 200
    assert data == b"".join(fakes.claude.sent)  # only the second try's bytes
    assert len(fakes.anthropic.requests) == 2


def test_heartbeats_pass_through_the_anthropic_stream(fakes: Fakes, serve: Serve) -> None:
    """A slow first token commits the answer early with ': ping' comments; the stream is
    still a valid Anthropic one, and a failure after such a commit is an error event."""
    gateway = serve(dialect_config(fakes, server={"heartbeat": 0.05, "shutdown_grace": 2}))
    body = {"model": "gpt", "max_tokens": 64, "messages": HI, "stream": True}
    fakes.openai.enqueue(slow_first_byte(0.3, chat_stream(content="late but whole")))
    status, _, data = post(gateway, body)
    assert status == 200
    assert data.startswith(b": ping\n\n")
    check_stream_shape(data)
    assert "late but whole" in "".join(
        json.loads(d)["delta"].get("text", "")
        for n, d in sse_events(data)
        if n == "content_block_delta"
    )
    fakes.openai.enqueue(slow_first_byte(0.3, server_error(503)), times=2)
    status, _, data = post(gateway, body)
    assert status == 200  # committed by the heartbeat: the failure travels inside
    assert data.startswith(b": ping\n\n")
    assert _no_false_completion(data)["type"] == "api_error"
