"""The translated provider streams, served from 127.0.0.1, read by the official ``openai``
package: what it accumulates is what ``aifetch.openai`` accumulates, and an error event
raises in it too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from aifetch.openai import ChatCompletionAccumulator, decode_chunk
from aifetch.providers import dialect
from tests.support.fake_upstream import FakeUpstream, chat_stream

from .helpers import CREATED, load, translate

TRANSCRIPTS = {
    "anthropic": [
        "anthropic_text.sse",
        "anthropic_tool_use_pieces.sse",
        "anthropic_thinking.sse",
        "anthropic_parallel_tools.sse",
        "anthropic_cache_usage.sse",
        "anthropic_refusal.sse",
    ],
    "gemini": [
        "gemini_text.sse",
        "gemini_function_call.sse",
        "gemini_thoughts_cached.sse",
        "gemini_parallel_calls.sse",
        "gemini_safety.sse",
    ],
}
CASES = [(kind, name) for kind, names in TRANSCRIPTS.items() for name in names]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def read_with_openai(up: FakeUpstream, output: bytes) -> dict[str, Any]:
    up.enqueue(chat_stream(chunks=[output], done=False))
    with openai.OpenAI(base_url=up.url, api_key="test", max_retries=0) as client:
        text, reasoning, finish = [], [], None
        calls: dict[int, dict[str, str]] = {}
        usage = None
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
        for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                delta = choice.delta
                text.append(delta.content or "")
                reasoning.append(getattr(delta, "reasoning_content", None) or "")
                for call in delta.tool_calls or ():
                    entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                    entry["id"] += call.id or ""
                    if call.function is not None:
                        entry["name"] += call.function.name or ""
                        entry["arguments"] += call.function.arguments or ""
                finish = choice.finish_reason or finish
        return {
            "text": "".join(text),
            "reasoning": "".join(reasoning),
            "calls": [calls[i] for i in sorted(calls)],
            "finish": finish,
            "usage": None if usage is None else (usage.prompt_tokens, usage.completion_tokens),
        }


def read_with_aifetch(output: bytes) -> dict[str, Any]:
    accumulator = ChatCompletionAccumulator()
    for block in output.split(b"\n\n"):
        if block.startswith(b"data: {"):
            accumulator.add(decode_chunk(block[6:]))
    choice = accumulator.final().choices[0]
    message = choice.message
    usage = accumulator.final().usage
    calls = [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
        for c in message.tool_calls or ()
    ]
    return {
        "text": message.content or "",
        "reasoning": message.reasoning_content or "",
        "calls": calls,
        "finish": choice.finish_reason,
        "usage": None if usage is None else (usage.prompt_tokens, usage.completion_tokens),
    }


@pytest.mark.parametrize(("kind", "name"), CASES)
def test_the_openai_sdk_reads_the_translated_stream(
    kind: str, name: str, upstream: FakeUpstream
) -> None:
    output, _ = translate(lambda: dialect(kind).stream_translator(created=CREATED), [load(name)])
    seen = read_with_openai(upstream, output)
    assert seen == read_with_aifetch(output)
    assert seen["finish"] is not None
    assert seen["text"] or seen["calls"] or seen["finish"] == "content_filter"


@pytest.mark.parametrize(
    ("kind", "name"),
    [("anthropic", "anthropic_overloaded.sse"), ("gemini", "gemini_error_mid_stream.sse")],
)
def test_a_provider_error_event_raises_in_the_openai_sdk(
    kind: str, name: str, upstream: FakeUpstream
) -> None:
    output, _ = translate(lambda: dialect(kind).stream_translator(created=CREATED), [load(name)])
    with pytest.raises(openai.APIError, match=r"(?i)overloaded"):
        read_with_openai(upstream, output)
