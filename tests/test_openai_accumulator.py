"""ChatCompletionAccumulator against real providers' chunk sequences and its own rules."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifetch.openai import (
    ChatCompletion,
    ChatCompletionAccumulator,
    ChatCompletionChunk,
    ChoiceDelta,
    ChoiceDeltaFunctionCall,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChoiceLogprobs,
    ChunkChoice,
    Function,
    ToolCall,
    ToolCallArgumentsError,
    Usage,
    decode_chunk,
)
from tests.support.openai_fixtures import CASES, Case


def accumulate(chunks: list[dict[str, Any]]) -> ChatCompletion:
    acc = ChatCompletionAccumulator()
    for payload in chunks:
        acc.add(decode_chunk(json.dumps(payload)))
    return acc.final()


def _chunk(*choices: ChunkChoice, **header: Any) -> ChatCompletionChunk:
    return ChatCompletionChunk(choices=list(choices), **header)


def _tool(
    index: int | None = None,
    id: str | None = None,
    name: str | None = None,
    arguments: str | None = None,
) -> ChoiceDelta:
    piece = ChoiceDeltaToolCall(
        index=index, id=id, function=ChoiceDeltaToolCallFunction(name=name, arguments=arguments)
    )
    return ChoiceDelta(tool_calls=[piece])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_final_equals_the_non_stream_answer(case: Case) -> None:
    final = accumulate(case.chunks)
    assert final == msgspec.convert(case.expected, ChatCompletion)


def _absent_as_null(answer: dict[str, Any]) -> dict[str, Any]:
    """``answer`` with the fields OpenAI leaves out written as null, as the types encode them."""
    answer = json.loads(json.dumps(answer))
    for choice in answer["choices"]:
        for name in ("reasoning_content", "reasoning_signature", "tool_calls", "function_call"):
            choice["message"].setdefault(name, None)
    if answer.get("usage"):
        for name in ("prompt_tokens_details", "completion_tokens_details"):
            answer["usage"].setdefault(name, None)
    return answer


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_final_encodes_to_the_non_stream_json(case: Case) -> None:
    final = accumulate(case.chunks)
    assert json.loads(msgspec.json.encode(final)) == _absent_as_null(case.expected)


def test_piece_without_index_or_id_continues_the_last_call() -> None:
    acc = ChatCompletionAccumulator()
    acc.add(_chunk(ChunkChoice(delta=_tool(id="a", name="f", arguments='{"x"'))))
    acc.add(_chunk(ChunkChoice(delta=_tool(arguments=": 1}"))))
    acc.add(_chunk(ChunkChoice(delta=_tool(id="b", name="g", arguments="{}"))))
    acc.add(_chunk(ChunkChoice(delta=_tool(arguments=" "))))
    calls = acc.final().choices[0].message.tool_calls
    assert calls == [
        ToolCall(id="a", function=Function(name="f", arguments='{"x": 1}')),
        ToolCall(id="b", function=Function(name="g", arguments="{} ")),
    ]


def test_piece_without_index_or_id_before_any_call_starts_one() -> None:
    acc = ChatCompletionAccumulator()
    acc.add(_chunk(ChunkChoice(delta=_tool(name="f", arguments="{}"))))
    calls = acc.final().choices[0].message.tool_calls
    assert calls == [ToolCall(id="", function=Function(name="f", arguments="{}"))]


def test_known_index_with_a_new_id_starts_a_new_call() -> None:
    # Some servers number every parallel call 0; the id tells them apart.
    acc = ChatCompletionAccumulator()
    acc.add(_chunk(ChunkChoice(delta=_tool(0, "a", "f", '{"n": 1}'))))
    acc.add(_chunk(ChunkChoice(delta=_tool(0, "b", "g", '{"n": 2}'))))
    calls = acc.final().choices[0].message.tool_calls
    assert calls == [
        ToolCall(id="a", function=Function(name="f", arguments='{"n": 1}')),
        ToolCall(id="b", function=Function(name="g", arguments='{"n": 2}')),
    ]


def test_role_is_taken_once_not_concatenated() -> None:
    acc = ChatCompletionAccumulator()
    for text in ("a", "b"):
        acc.add(_chunk(ChunkChoice(delta=ChoiceDelta(role="assistant", content=text))))
    message = acc.final().choices[0].message
    assert (message.role, message.content) == ("assistant", "ab")


def test_finish_reason_last_non_null_wins() -> None:
    acc = ChatCompletionAccumulator()
    acc.add(_chunk(ChunkChoice(delta=ChoiceDelta(content="x"), finish_reason="length")))
    acc.add(_chunk(ChunkChoice(finish_reason="stop")))
    acc.add(_chunk(ChunkChoice(finish_reason=None)))
    assert acc.final().choices[0].finish_reason == "stop"


def test_header_fields_come_from_the_first_chunk_that_has_them() -> None:
    acc = ChatCompletionAccumulator()
    acc.add(_chunk(id="", created=0, model=""))
    acc.add(_chunk(id="one", created=5, model="m1", system_fingerprint=None))
    acc.add(_chunk(id="two", created=6, model="m2", system_fingerprint="fp", service_tier="x"))
    final = acc.final()
    assert (final.id, final.created, final.model) == ("one", 5, "m1")
    assert (final.system_fingerprint, final.service_tier) == ("fp", "x")


def test_last_usage_wins() -> None:
    # vLLM's continuous usage stats send a running total on every chunk.
    acc = ChatCompletionAccumulator()
    acc.add(_chunk(usage=Usage(prompt_tokens=3, completion_tokens=1, total_tokens=4)))
    acc.add(_chunk(usage=Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)))
    acc.add(_chunk())
    assert acc.final().usage == Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)


def test_empty_answer_keeps_empty_content() -> None:
    acc = ChatCompletionAccumulator()
    acc.add(_chunk(ChunkChoice(delta=ChoiceDelta(role="assistant", content=""))))
    acc.add(_chunk(ChunkChoice(finish_reason="stop")))
    assert acc.final().choices[0].message.content == ""


def test_no_chunks_gives_an_empty_completion() -> None:
    final = ChatCompletionAccumulator().final()
    assert final == ChatCompletion()


def test_final_can_be_called_again_and_later_chunks_do_not_change_earlier_results() -> None:
    acc = ChatCompletionAccumulator()
    logprobs = ChoiceLogprobs(content=[])
    acc.add(_chunk(ChunkChoice(delta=ChoiceDelta(content="a"), logprobs=logprobs)))
    first = acc.final()
    acc.add(
        _chunk(ChunkChoice(delta=ChoiceDelta(content="b"), logprobs=ChoiceLogprobs(content=[])))
    )
    assert first.choices[0].message.content == "a"
    assert first.choices[0].logprobs == ChoiceLogprobs(content=[])
    assert acc.final().choices[0].message.content == "ab"
    assert acc.final() == acc.final()


def test_legacy_function_call_name_is_not_repeated() -> None:
    acc = ChatCompletionAccumulator()
    for args in ('{"a"', ": 1}"):
        fc = ChoiceDeltaFunctionCall(name="f", arguments=args)
        acc.add(_chunk(ChunkChoice(delta=ChoiceDelta(function_call=fc))))
    assert acc.final().choices[0].message.function_call == Function(name="f", arguments='{"a": 1}')


def test_many_small_pieces_join_in_order() -> None:
    acc = ChatCompletionAccumulator()
    pieces = [f"{i}," for i in range(20_000)]
    for piece in pieces:
        acc.add(_chunk(ChunkChoice(delta=ChoiceDelta(content=piece))))
    assert acc.final().choices[0].message.content == "".join(pieces)


# --- tool_calls_parsed ------------------------------------------------------------------------


def test_tool_calls_parsed_decodes_arguments() -> None:
    acc = ChatCompletionAccumulator()
    for payload in CASES[3].chunks:  # parallel_tool_calls
        acc.add(decode_chunk(json.dumps(payload)))
    parsed = acc.tool_calls_parsed()
    assert [(call.function.name, args) for call, args in parsed] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "Europe/Paris"}),
    ]


def test_tool_calls_parsed_reads_empty_arguments_as_no_arguments() -> None:
    acc = ChatCompletionAccumulator()
    acc.add(_chunk(ChunkChoice(delta=_tool(0, "a", "now", ""))))
    assert acc.tool_calls_parsed() == [(ToolCall(id="a", function=Function(name="now")), {})]


def test_tool_calls_parsed_for_a_missing_choice_is_empty() -> None:
    assert ChatCompletionAccumulator().tool_calls_parsed(3) == []


def test_invalid_arguments_name_the_call_and_position() -> None:
    acc = ChatCompletionAccumulator()
    acc.add(_chunk(ChunkChoice(delta=_tool(0, "a", "ok", "{}"))))
    acc.add(_chunk(ChunkChoice(delta=_tool(1, "call_b", "broken", '{"city": "Par'))))
    with pytest.raises(ToolCallArgumentsError) as info:
        acc.tool_calls_parsed()
    err = info.value
    assert isinstance(err, ValueError)
    assert err.position == 1
    assert err.tool_call.function.name == "broken"
    assert "tool call #1 'broken' (id call_b)" in str(err)
    assert "at character 9" in str(err)
    assert isinstance(err.__cause__, json.JSONDecodeError)


# --- property: any valid-shaped sequence accumulates without error ----------------------------

_text = st.one_of(st.none(), st.text(max_size=5))
_tool_piece = st.builds(
    ChoiceDeltaToolCall,
    index=st.one_of(st.none(), st.integers(0, 3)),
    id=st.one_of(st.none(), st.sampled_from(["", "a", "b", "c"])),
    type=st.one_of(st.none(), st.just("function")),
    function=st.one_of(
        st.none(), st.builds(ChoiceDeltaToolCallFunction, name=_text, arguments=_text)
    ),
)
_delta = st.builds(
    ChoiceDelta,
    role=st.one_of(st.none(), st.just("assistant")),
    content=_text,
    refusal=_text,
    reasoning_content=_text,
    tool_calls=st.one_of(st.none(), st.lists(_tool_piece, max_size=3)),
    function_call=st.one_of(
        st.none(), st.builds(ChoiceDeltaFunctionCall, name=_text, arguments=_text)
    ),
)
_choice = st.builds(
    ChunkChoice,
    index=st.integers(0, 2),
    delta=_delta,
    logprobs=st.one_of(st.none(), st.builds(ChoiceLogprobs)),
    finish_reason=st.one_of(st.none(), st.sampled_from(["stop", "length", "tool_calls"])),
)
_chunks = st.lists(
    st.builds(
        ChatCompletionChunk,
        id=st.sampled_from(["", "x"]),
        choices=st.lists(_choice, max_size=3),
        usage=st.one_of(st.none(), st.builds(Usage)),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(_chunks)
def test_any_valid_chunk_sequence_accumulates(chunks: list[ChatCompletionChunk]) -> None:
    acc = ChatCompletionAccumulator()
    for chunk in chunks:
        acc.add(chunk)
    final = acc.final()
    indexes = sorted({c.index for chunk in chunks for c in chunk.choices})
    assert [c.index for c in final.choices] == indexes
    for choice in final.choices:
        pieces = [
            c.delta.content
            for chunk in chunks
            for c in chunk.choices
            if c.index == choice.index and c.delta.content
        ]
        assert (choice.message.content or "") == "".join(pieces)
    # The result always encodes and decodes back to itself.
    assert msgspec.json.decode(msgspec.json.encode(final), type=ChatCompletion) == final
