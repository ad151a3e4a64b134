"""The Anthropic stream translator on recorded transcripts, whole and at every split.

The expected outputs are written from reading each transcript (SOURCES.md says where each
comes from): what an OpenAI upstream would have streamed for the same answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aifetch.providers import ProviderUsage, dialect
from aifetch.providers._anthropic_stream import AnthropicStreamTranslator
from aifetch.sse import ServerSentEvent, SSEBlockSplitter

from .helpers import CREATED, DONE, PING, OpenAIChunks, check_every_split, load, parse, translate


def make(include_usage: bool = True) -> Callable[[], AnthropicStreamTranslator]:
    return lambda: AnthropicStreamTranslator(include_usage=include_usage, created=CREATED)


def _text() -> list[Any]:
    c = OpenAIChunks("msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "claude-opus-5")
    return [c.role(), PING, *c.text("Hello", "!"), c.finish("stop"), c.usage(25, 15), DONE]


def _tool_use_pieces() -> list[Any]:
    c = OpenAIChunks("msg_014p7gG3wDgGV9EUtLvnow3U", "claude-opus-5")
    words = ["Okay", ",", " let", "'s", " check", " the", " weather", " for", " San"]
    words += [" Francisco", ",", " CA", ":"]
    return [
        c.role(),
        PING,
        *c.text(*words),
        c.tool(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
        # Each input_json_delta as it came (the empty first one carries nothing).
        *c.args(0, '{"location":', ' "San', " Francisc", "o,", ' CA"}'),
        c.finish("tool_calls"),
        c.usage(472, 89),
        DONE,
    ]


def _thinking() -> list[Any]:
    c = OpenAIChunks("msg_01...", "claude-opus-5")
    thoughts = [
        "I need to find the GCD of 1071 and 462 using the Euclidean algorithm.\n\n"
        "1071 = 2 × 462 + 147",
        "\n462 = 3 × 147 + 21",
        "\n147 = 7 × 21 + 0",
        "\nThe remainder is 0, so GCD(1071, 462) = 21.",
    ]
    return [
        c.role(),
        *c.reasoning(*thoughts),
        c.signature("EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."),
        *c.text("The greatest common divisor of 1071 and 462 is **21**."),
        c.finish("stop"),
        DONE,  # this stream reports no usage at all: no usage chunk
    ]


def _refusal() -> list[Any]:
    c = OpenAIChunks("msg_01RefusalTestMessage123456789", "claude-opus-4-7")
    return [c.role(), c.finish("content_filter"), c.usage(20, 120, reasoning=67), DONE]


def _cache_usage() -> list[Any]:
    c = OpenAIChunks("msg_011CdYfpjpVtBoXyXCQD1tQP", "claude-sonnet-5")
    # The server tool blocks (code execution and its results) are not client tool calls.
    # Prompt: 6 uncached + 3337 cache writes + 6289 cache reads (message_delta's totals).
    return [
        c.role(),
        PING,
        *c.text("The", " sum of the squares of the numbers 1 through 12 is **650**."),
        c.finish("stop"),
        c.usage(9632, 198, cached=6289),
        DONE,
    ]


def _usage_in_delta() -> list[Any]:
    c = OpenAIChunks("msg_01QC4g3HwBThD4BaNtBckFDJ", "claude-sonnet-4-5-20250929")
    texts = ["Hello", "! I", "'m doing well, thank you for asking", ". How are you doing today?"]
    texts += [" Is", " there anything I can help you with?"]
    return [c.role(), PING, *c.text(*texts), c.finish("stop"), c.usage(12, 30), DONE]


def _parallel_tools() -> list[Any]:
    c = OpenAIChunks("msg_011CdHMeT7EYp2un4JDDZLDT", "claude-sonnet-4-5-20250929")
    return [
        c.role(),
        PING,
        *c.text("Let", " me check both."),
        c.tool(0, "toolu_01Ni1uw4HXYxUhc4iFMqx7yY", "get_weather"),
        *c.args(0, '{"city": "San Francisco', '"}'),
        c.tool(1, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_time"),
        *c.args(1, '{"timezone": "America/Los_Angeles"}'),
        c.tool(2, "toolu_01VqG2jCdyjoB9HMTFnCKeo2", "get_location"),
        *c.args(2, "{}"),  # no input deltas at all: the arguments of a call without input
        c.finish("tool_calls"),
        c.usage(624, 97),
        DONE,
    ]


def _max_tokens() -> list[Any]:
    c = OpenAIChunks("msg_01QC4g3HwBThD4BaNtBckFDJ", "claude-sonnet-4-5-20250929")
    texts = ["Hello", "! I", "'m doing well, thank you for asking"]
    return [c.role(), PING, *c.text(*texts), c.finish("length"), c.usage(12, 10), DONE]


def _overloaded() -> list[Any]:
    c = OpenAIChunks("msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "claude-opus-5")
    error = {"message": "Overloaded", "type": "overloaded_error", "param": None}
    error["code"] = "overloaded"
    return [c.role(), *c.text("Hello"), ("error", {"error": error})]  # and no [DONE]


CASES = {
    "anthropic_text.sse": _text,
    "anthropic_tool_use_pieces.sse": _tool_use_pieces,
    "anthropic_thinking.sse": _thinking,
    "anthropic_refusal.sse": _refusal,
    "anthropic_cache_usage.sse": _cache_usage,
    "anthropic_usage_in_delta.sse": _usage_in_delta,
    "anthropic_parallel_tools.sse": _parallel_tools,
    "anthropic_max_tokens.sse": _max_tokens,
    "anthropic_overloaded.sse": _overloaded,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_transcript_translates_exactly_at_every_split(name: str) -> None:
    translator = check_every_split(make(), load(name), CASES[name]())
    assert translator.done is (name != "anthropic_overloaded.sse")


USAGE = {
    "anthropic_text.sse": ProviderUsage(25, 15),
    "anthropic_tool_use_pieces.sse": ProviderUsage(472, 89),
    "anthropic_thinking.sse": None,
    "anthropic_refusal.sse": ProviderUsage(20, 120, reasoning_tokens=67),
    "anthropic_cache_usage.sse": ProviderUsage(9632, 198, 6289, 0, 3337),
    "anthropic_usage_in_delta.sse": ProviderUsage(12, 30),
    "anthropic_parallel_tools.sse": ProviderUsage(624, 97),
    "anthropic_max_tokens.sse": ProviderUsage(12, 10),
    "anthropic_overloaded.sse": ProviderUsage(25, 1),
}


@pytest.mark.parametrize("name", sorted(USAGE))
def test_usage_is_exposed_for_accounting(name: str) -> None:
    _, translator = translate(make(), [load(name)])
    assert translator.usage == USAGE[name]


def test_without_include_usage_no_usage_chunk_is_sent() -> None:
    output, translator = translate(make(include_usage=False), [load("anthropic_text.sse")])
    expected = _text()
    expected.remove(expected[-2])
    assert parse(output) == expected
    assert translator.usage == ProviderUsage(25, 15)  # still known for accounting


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_stream_cut_before_message_stop_never_ends_with_done(name: str) -> None:
    blocks = SSEBlockSplitter().feed(load(name))
    for keep in range(len(blocks)):
        if blocks[keep - 1].startswith(b"event: message_stop") and keep:
            break
        output, translator = translate(make(), [b"".join(blocks[:keep])])
        assert b"[DONE]" not in output
        assert not translator.done


def test_an_error_event_ends_the_output_whatever_follows() -> None:
    data = load("anthropic_overloaded.sse") + load("anthropic_text.sse")
    output, translator = translate(make(), [data])
    assert parse(output)[-1][0] == "error"
    assert b"[DONE]" not in output
    assert translator.error is not None
    assert translator.error.type == "overloaded_error"


def test_events_without_their_event_line_translate_the_same() -> None:
    # Some proxies pass Anthropic's stream on with the "event:" lines dropped.
    data = load("anthropic_parallel_tools.sse")
    stripped = b"\n".join(line for line in data.split(b"\n") if not line.startswith(b"event:"))
    assert translate(make(), [stripped])[0] == translate(make(), [data])[0]


def test_content_started_marks_the_commit_point() -> None:
    translator = make()()
    blocks = SSEBlockSplitter().feed(load("anthropic_tool_use_pieces.sse"))
    seen = []
    from aifetch.sse import parse_block

    for block in blocks:
        event = parse_block(block)
        assert event is not None
        translator.feed(event)
        seen.append((event.event, translator.content_started))
    # message_start, content_block_start and ping come before any content.
    assert seen[:3] == [
        ("message_start", False),
        ("content_block_start", False),
        ("ping", False),
    ]
    assert seen[3] == ("content_block_delta", True)


def test_an_event_that_is_not_json_fails_the_stream_with_an_openai_error() -> None:
    translator = make()()
    translator.feed(
        ServerSentEvent("message_start", load("anthropic_text.sse").split(b"\n")[1][6:].decode())
    )
    output = translator.feed(ServerSentEvent("content_block_delta", "{not json"))
    kind, body = parse(output)[0]
    assert kind == "error"
    assert body["error"]["code"] == "invalid_upstream_event"
    assert translator.feed(ServerSentEvent("message_stop", '{"type":"message_stop"}')) == b""


def test_unknown_event_types_are_skipped() -> None:
    translator = make()()
    assert translator.feed(ServerSentEvent("some_future_event", '{"type":"x"}')) == b""
    assert translator.error is None


def test_the_dialect_gives_this_translator() -> None:
    translator = dialect("anthropic").stream_translator(created=CREATED)
    output, _ = translate(lambda: translator, [load("anthropic_text.sse")])
    assert parse(output) == _text()
