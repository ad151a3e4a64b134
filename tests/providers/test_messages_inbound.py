"""The inbound direction, for /v1/messages: Anthropic request → OpenAI request, and OpenAI
answers (whole and streamed) → Anthropic's shape, checked with the official ``anthropic``
SDK reading the translated stream from a real 127.0.0.1 server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import msgspec
import pytest

from aifetch.providers import (
    MessagesStreamTranslator,
    TranslationError,
    chat_completion_to_message,
    dialect,
    messages_request_to_chat,
)
from aifetch.sse import ServerSentEvent
from tests.support import openai_fixtures as fx
from tests.support.fake_anthropic import Transcript
from tests.support.fake_upstream import FakeUpstream

from .helpers import CREATED, load, parse, splits, translate

MODEL = "claude-sonnet-4-5"


def chat(body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    inbound = messages_request_to_chat(msgspec.json.encode(body))
    return inbound, json.loads(inbound.body)


# --- requests -------------------------------------------------------------------------------


def test_a_whole_request_maps_field_by_field() -> None:
    body = {
        "model": MODEL,
        "max_tokens": 1024,
        "system": [
            {
                "type": "text",
                "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "text", "text": "Be brief."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in "},
                    {"type": "text", "text": "this image?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/a.png"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Look at it.", "signature": "EqQB"},
                    {"type": "redacted_thinking", "data": "EmwK"},
                    {"type": "text", "text": "Let me zoom in."},
                    {"type": "tool_use", "id": "toolu_01", "name": "zoom", "input": {"factor": 2}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "a cat"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_02",
                        "content": [{"type": "text", "text": "ok"}],
                        "is_error": True,
                    },
                    {"type": "text", "text": "And now?"},
                ],
            },
        ],
        "tools": [{"name": "zoom", "description": "Zoom", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 8000},
        "stop_sequences": ["END"],
        "temperature": 1,
        "top_k": 5,
        "metadata": {"user_id": "u-1"},
        "stream": True,
    }
    inbound, out = chat(body)
    assert (inbound.model, inbound.stream) == (MODEL, True)
    assert out == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are Claude Code."},
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in "},
                    {"type": "text", "text": "this image?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me zoom in.",
                "tool_calls": [
                    {
                        "id": "toolu_01",
                        "type": "function",
                        "function": {"name": "zoom", "arguments": '{"factor":2}'},
                    }
                ],
                "reasoning_content": "Look at it.",
                "reasoning_signature": "EqQB",
            },
            {"role": "tool", "tool_call_id": "toolu_01", "content": "a cat"},
            {"role": "tool", "tool_call_id": "toolu_02", "content": "ok"},
            {"role": "user", "content": "And now?"},
        ],
        "max_completion_tokens": 1024,
        "temperature": 1,
        "top_k": 5,
        "stop": ["END"],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "zoom",
                    "description": "Zoom",
                    "parameters": {"type": "object"},
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "reasoning_effort": "medium",
        "user": "u-1",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages[0].content[0].type",
        ),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "image"}],
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].type",
        ),
    ],
)
def test_what_cannot_be_translated_is_refused(extra: dict[str, Any], param: str) -> None:
    body = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(TranslationError) as caught:
        chat({**body, **extra})
    assert caught.value.param == param


def test_the_translated_request_goes_on_through_another_dialect() -> None:
    # /v1/messages in front of a Gemini upstream: Anthropic → OpenAI → Gemini.
    inbound, _ = chat(
        {
            "model": "gemini-2.5-flash",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    request = dialect("gemini").build_request(inbound.body)
    assert json.loads(request.body)["generationConfig"] == {"maxOutputTokens": 100}


# --- whole answers -----------------------------------------------------------------------------


def test_a_completion_becomes_a_message() -> None:
    body = msgspec.json.encode(fx.OPENAI_USAGE_CHUNK.expected)
    message, usage = chat_completion_to_message(body, model=MODEL)
    assert json.loads(message) == {
        "id": fx.OPENAI_USAGE_CHUNK.expected["id"],
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [
            {
                "type": "text",
                "text": fx.OPENAI_USAGE_CHUNK.expected["choices"][0]["message"]["content"],
            }
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 19,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 3,
        },
    }
    assert usage is not None
    assert usage.prompt_tokens == 19


def test_a_tool_call_completion_becomes_tool_use_blocks() -> None:
    message, _ = chat_completion_to_message(
        msgspec.json.encode(fx.PARALLEL_TOOL_CALLS.expected), model=MODEL
    )
    out = json.loads(message)
    assert out["stop_reason"] == "tool_use"
    assert out["content"] == [
        {
            "type": "tool_use",
            "id": "call_Wd2uM1",
            "name": "get_weather",
            "input": {"city": "Paris"},
        },
        {
            "type": "tool_use",
            "id": "call_Kq8vB3",
            "name": "get_time",
            "input": {"tz": "Europe/Paris"},
        },
    ]


def test_reasoning_and_refusal_in_a_completion() -> None:
    message, _ = chat_completion_to_message(
        msgspec.json.encode(fx.DEEPSEEK_REASONING.expected), model=MODEL
    )
    content = json.loads(message)["content"]
    assert content[0]["type"] == "thinking"
    assert content[0]["thinking"]
    message, _ = chat_completion_to_message(msgspec.json.encode(fx.REFUSAL.expected), model=MODEL)
    out = json.loads(message)
    assert out["stop_reason"] == "refusal"
    assert out["content"][0]["type"] == "text"


# --- streams -------------------------------------------------------------------------------------


def events_of(output: bytes) -> list[tuple[str, dict[str, Any]]]:
    parsed = parse(output)
    assert all(isinstance(p, tuple) and p[0] != "comment" for p in parsed), parsed
    return parsed


def check_valid_anthropic_stream(events: list[tuple[str, dict[str, Any]]]) -> None:
    """message_start first; blocks opened in index order, one at a time, each stopped;
    message_delta after the last stop; message_stop last."""
    assert events[0][0] == "message_start"
    assert [name for name, _ in events[-2:]] == ["message_delta", "message_stop"]
    open_index, next_index = None, 0
    for name, data in events[1:-2]:
        assert data["type"] == name
        if name == "content_block_start":
            assert open_index is None
            assert data["index"] == next_index
            open_index, next_index = next_index, next_index + 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
        else:
            assert name == "content_block_stop"
            assert data["index"] == open_index
            open_index = None
    assert open_index is None


STREAM_CASES = [c for c in fx.CASES if c.name != "legacy_function_call"]


def translate_openai(case: fx.Case, pieces: list[bytes] | None = None) -> tuple[bytes, Any]:
    data = fx.sse_body(case.chunks)
    return translate(lambda: MessagesStreamTranslator(model=MODEL), pieces or [data])


@pytest.mark.parametrize("case", STREAM_CASES, ids=lambda c: c.name)
def test_openai_streams_become_valid_anthropic_streams_at_every_split(case: fx.Case) -> None:
    whole, translator = translate_openai(case)
    check_valid_anthropic_stream(events_of(whole))
    assert translator.done
    assert translator.error is None
    for pieces in splits(fx.sse_body(case.chunks)):
        assert translate_openai(case, pieces)[0] == whole


@pytest.fixture(scope="module")
def serve() -> Iterator[Any]:
    """Serve given event-stream bytes at /v1/messages for the anthropic SDK to read."""
    with (
        FakeUpstream() as up,
        anthropic.Anthropic(base_url=up.url, api_key="test-key", max_retries=0) as client,
    ):

        def stream_of(output: bytes) -> Any:
            up.enqueue(Transcript(output))
            return client.messages.stream(
                model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "x"}]
            )

        yield stream_of


def blocks_of(message: Any) -> list[dict[str, Any]]:
    return [block.model_dump(exclude_none=True) for block in message.content]


@pytest.mark.parametrize("case", STREAM_CASES, ids=lambda c: c.name)
def test_the_anthropic_sdk_reads_the_answer_the_completion_holds(case: fx.Case, serve: Any) -> None:
    output, _ = translate_openai(case)
    with serve(output) as stream:
        final = stream.get_final_message()
    choice = case.expected["choices"][0]
    message = choice["message"]
    expected: list[dict[str, Any]] = []
    if message.get("reasoning_content"):
        expected.append(
            {"type": "thinking", "thinking": message["reasoning_content"], "signature": ""}
        )
    text = message.get("content") or message.get("refusal")
    if text:
        expected.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        arguments = json.loads(call["function"]["arguments"] or "{}")
        expected.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": call["function"]["name"],
                "input": arguments,
            }
        )
    got = [
        {k: v for k, v in b.items() if k not in ("citations", "caller")} for b in blocks_of(final)
    ]
    assert got == expected
    finish = "content_filter" if message.get("refusal") else choice["finish_reason"]
    stops = {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
        "content_filter": "refusal",
    }
    assert final.stop_reason == stops[finish]
    usage = case.expected.get("usage")
    if usage:
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        assert final.usage.output_tokens == usage["completion_tokens"]
        assert final.usage.input_tokens == usage["prompt_tokens"] - cached


def content_of(message: Any) -> list[dict[str, Any]]:
    """The blocks that carry something (an empty text block has no OpenAI delta to become),
    without the fields OpenAI has no place for (citations, the tool caller)."""
    blocks = [
        {k: v for k, v in b.items() if k not in ("citations", "caller")} for b in blocks_of(message)
    ]
    return [b for b in blocks if b != {"type": "text", "text": ""}]


ROUND_TRIP = [
    "anthropic_text.sse",
    "anthropic_tool_use_pieces.sse",
    "anthropic_refusal.sse",
    "anthropic_usage_in_delta.sse",
    "anthropic_parallel_tools.sse",
    "anthropic_max_tokens.sse",
]


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_anthropic_to_openai_and_back_gives_the_anthropic_sdk_the_same_message(
    name: str, serve: Any
) -> None:
    original = load(name)
    with serve(original) as stream:
        direct = stream.get_final_message()
    openai_bytes, _ = translate(
        lambda: dialect("anthropic").stream_translator(created=CREATED), [original]
    )
    back, _ = translate(lambda: MessagesStreamTranslator(model=MODEL), [openai_bytes])
    check_valid_anthropic_stream(events_of(back))
    with serve(back) as stream:
        trip = stream.get_final_message()
    assert content_of(trip) == content_of(direct)
    assert trip.stop_reason == direct.stop_reason
    assert trip.usage.output_tokens == direct.usage.output_tokens
    assert trip.usage.input_tokens == direct.usage.input_tokens


def test_thinking_and_its_signature_survive_the_round_trip(serve: Any) -> None:
    # (The API reference's thinking stream has no usage, which the SDK cannot read as it is.)
    openai_bytes, _ = translate(
        lambda: dialect("anthropic").stream_translator(created=CREATED),
        [load("anthropic_thinking.sse")],
    )
    back, _ = translate(lambda: MessagesStreamTranslator(model=MODEL), [openai_bytes])
    with serve(back) as stream:
        trip = stream.get_final_message()
    assert blocks_of(trip) == [
        {
            "type": "thinking",
            "thinking": "I need to find the GCD of 1071 and 462 using the Euclidean algorithm.\n\n"
            "1071 = 2 × 462 + 147\n462 = 3 × 147 + 21\n147 = 7 × 21 + 0\n"
            "The remainder is 0, so GCD(1071, 462) = 21.",
            "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds...",
        },
        {"type": "text", "text": "The greatest common divisor of 1071 and 462 is **21**."},
    ]
    # And the next turn, sent back through both translations, rebuilds the signed block.
    turn = {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "GCD?"},
            {"role": "assistant", "content": blocks_of(trip)},
            {"role": "user", "content": "Thanks"},
        ],
    }
    inbound = messages_request_to_chat(msgspec.json.encode(turn))
    request = json.loads(dialect("anthropic").build_request(inbound.body).body)
    assert request["messages"][1]["content"][0] == blocks_of(trip)[0]


def test_an_openai_error_mid_stream_is_an_anthropic_error_and_the_sdk_raises(serve: Any) -> None:
    case = fx.OPENAI_CONTENT
    error = (
        b'data: {"error":{"message":"upstream fell over","type":"server_error",'
        b'"param":null,"code":null}}\n\n'
    )
    data = fx.sse_body(case.chunks[:2], done=False) + error + fx.sse_body(case.chunks[2:])
    output, translator = translate(lambda: MessagesStreamTranslator(model=MODEL), [data])
    events = events_of(output)
    assert events[-1] == (
        "error",
        {"type": "error", "error": {"type": "api_error", "message": "upstream fell over"}},
    )
    assert "message_stop" not in [name for name, _ in events]
    assert translator.error is not None
    assert not translator.done
    with (
        pytest.raises(anthropic.APIStatusError, match="upstream fell over"),
        serve(output) as stream,
    ):
        stream.get_final_message()


def test_an_error_event_keeps_its_anthropic_type() -> None:
    translator = MessagesStreamTranslator(model=MODEL)
    out = translator.feed(
        ServerSentEvent("error", '{"error":{"message":"Overloaded","type":"overloaded_error"}}')
    )
    assert parse(out) == [
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    ]


@pytest.mark.parametrize("keep", [0, 1, 3])
def test_input_ending_without_done_closes_with_an_error_never_message_stop(
    keep: int, serve: Any
) -> None:
    data = fx.sse_body(fx.PARALLEL_TOOL_CALLS.chunks[:keep], done=False)
    output, translator = translate(lambda: MessagesStreamTranslator(model=MODEL), [data])
    events = events_of(output)
    assert events[-1][0] == "error"
    assert "message_stop" not in [name for name, _ in events]
    assert not translator.done
    if keep:
        with pytest.raises(anthropic.APIStatusError), serve(output) as stream:
            stream.get_final_message()


def test_a_lone_signature_opens_a_thinking_block_before_the_tool_call() -> None:
    # Gemini signs its function calls without thought text: the signature must survive.
    openai_bytes, _ = translate(
        lambda: dialect("gemini").stream_translator(created=CREATED),
        [load("gemini_function_call.sse")],
    )
    output, _ = translate(lambda: MessagesStreamTranslator(model=MODEL), [openai_bytes])
    events = events_of(output)
    check_valid_anthropic_stream(events)
    starts = [
        data["content_block"]["type"] for name, data in events if name == "content_block_start"
    ]
    assert starts == ["thinking", "tool_use"]
    signatures = [
        d["delta"]["signature"]
        for n, d in events
        if n == "content_block_delta" and d["delta"]["type"] == "signature_delta"
    ]
    assert signatures
    assert signatures[0].startswith("EqUCCqICAb4")


def test_a_known_tool_index_with_a_new_id_opens_a_new_tool_use_block() -> None:
    # Some servers number every parallel call 0; the id tells the calls apart.
    def piece(id: str, name: str, arguments: str) -> dict[str, Any]:
        call = {"index": 0, "id": id, "type": "function"}
        call["function"] = {"name": name, "arguments": arguments}
        return {"tool_calls": [call]}

    chunks = [
        fx.chunk(
            [{"index": 0, "delta": piece("call_a", "f", '{"x":1}')}], id="c", model="m", created=1
        ),
        fx.chunk(
            [{"index": 0, "delta": piece("call_b", "g", '{"y":2}')}], id="c", model="m", created=1
        ),
        fx.chunk(
            [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}], id="c", model="m", created=1
        ),
    ]
    output, _ = translate(lambda: MessagesStreamTranslator(model=MODEL), [fx.sse_body(chunks)])
    events = events_of(output)
    check_valid_anthropic_stream(events)
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert [(s["id"], s["name"]) for s in starts] == [("call_a", "f"), ("call_b", "g")]
