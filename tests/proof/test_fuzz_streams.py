"""Fuzzing the sans-IO stream pieces: the SSE decoder and splitter under arbitrary bytes at
arbitrary chunkings with tight size bounds, and the OpenAI accumulator against generated
conversations streamed the way providers stream them.

``tests/test_sse_properties.py`` checks the decoder against the spec's algorithm with the
default (16 MiB) bound; here the bound is small, so the size checks and the error path are
reached, and the decoder's held bytes are measured after every ``feed``.
"""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aifetch.openai import (
    ChatCompletion,
    ChatCompletionAccumulator,
    ChatCompletionMessage,
    Choice,
    Function,
    ToolCall,
    Usage,
    decode_chunk,
)
from aifetch.sse import EventTooLargeError, ServerSentEvent, SSEBlockSplitter, SSEDecoder, SSEError

from ._inputs_support import FUZZ_EXAMPLES, chunkings, json_values

FUZZ = settings(
    max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Bytes that matter to an SSE parser, mixed with arbitrary bytes.
_SSE_TOKENS = [
    b"data: ", b"data:", b"data", b"event: x", b"id: 7", b"retry: 10", b": c", b":",
    b"\n", b"\n\n", b"\r", b"\r\n", b"\xef\xbb\xbf", b"\xef\xbb", b"\xff", b"xxxxxxxx",
]  # fmt: skip
_sse_bytes = st.lists(
    st.one_of(st.sampled_from(_SSE_TOKENS), st.binary(max_size=24)), max_size=60
).map(b"".join)


def _held(decoder: SSEDecoder) -> int:
    """Bytes the decoder holds for the event being read: its line and its data buffer."""
    data = sum(len(value) + 1 for value in decoder._data)
    assert data == decoder._data_size  # the running count the bound is checked against
    return len(decoder._line) + data


def _decode(chunks: list[bytes], limit: int) -> tuple[list[ServerSentEvent], bool]:
    """Events dispatched before any error, and whether the bound was exceeded."""
    decoder = SSEDecoder(max_event_size=limit, on_comment=lambda _: None)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        try:
            events.extend(decoder.feed(chunk))
        except EventTooLargeError:
            return events, True
        # The documented bound: never more than max_event_size held, at any chunking.
        assert _held(decoder) <= limit
        assert len(decoder._event or b"") <= limit
    events.extend(decoder.close())
    return events, False


@FUZZ
@given(_sse_bytes, st.data(), st.integers(1, 64))
def test_decoder_stays_bounded_and_chunking_invariant(
    stream: bytes, data: st.DataObject, limit: int
) -> None:
    chunks = data.draw(chunkings(stream))
    try:
        whole = _decode([stream], limit)
        split = _decode(chunks, limit)
        byte_by_byte = _decode([stream[i : i + 1] for i in range(len(stream))], limit)
    except SSEError as exc:  # EventTooLargeError is caught above; any other is documented
        raise AssertionError(f"unexpected decoder error {exc!r}") from exc
    unbounded = _decode([stream], 1 << 30)[0]
    for events, too_large in (whole, split, byte_by_byte):
        if not too_large:
            assert events == unbounded
        else:
            # Events dispatched before the bound was hit are the stream's own, in order.
            assert events == unbounded[: len(events)]


@FUZZ
@given(st.binary(max_size=400), st.data(), st.integers(1, 64))
def test_decoder_raises_only_its_own_errors_on_arbitrary_bytes(
    stream: bytes, data: st.DataObject, limit: int
) -> None:
    decoder = SSEDecoder(max_event_size=limit)
    for chunk in data.draw(chunkings(stream)):
        try:
            decoder.feed(chunk)
        except EventTooLargeError:
            return
        assert _held(decoder) <= limit
    assert decoder.close() == []


@FUZZ
@given(_sse_bytes, st.data(), st.integers(1, 64))
def test_splitter_stays_bounded_and_loses_no_byte(
    stream: bytes, data: st.DataObject, limit: int
) -> None:
    splitter = SSEBlockSplitter(max_event_size=limit)
    out: list[bytes] = []
    chunks = data.draw(chunkings(stream))
    for chunk in chunks:
        try:
            blocks = splitter.feed(chunk)
        except EventTooLargeError:
            return
        assert all(len(block) <= limit for block in blocks)
        assert len(splitter._pending) <= limit
        out.extend(blocks)
    # Bounded and still byte-exact: every byte given comes out once, in order.
    assert b"".join(out) + splitter.close() == stream


# --- the accumulator: arbitrary chunk-shaped JSON ------------------------------------------

_small_int = st.one_of(st.integers(-3, 5), st.integers(-(2**63), 2**63 - 1))
_maybe_text = st.one_of(st.none(), st.text(max_size=6), st.integers(), json_values(1))
_tool_piece_json = st.fixed_dictionaries(
    {},
    optional={
        "index": st.one_of(st.none(), _small_int),
        "id": st.one_of(st.none(), st.sampled_from(["", "a", "b"])),
        "type": st.one_of(st.none(), st.just("function")),
        "function": st.one_of(
            st.none(),
            st.fixed_dictionaries({}, optional={"name": _maybe_text, "arguments": _maybe_text}),
        ),
    },
)
_delta_json = st.fixed_dictionaries(
    {},
    optional={
        "role": st.one_of(st.none(), st.sampled_from(["assistant", "tool", ""])),
        "content": _maybe_text,
        "refusal": _maybe_text,
        "reasoning_content": _maybe_text,
        "tool_calls": st.one_of(st.none(), st.lists(_tool_piece_json, max_size=3)),
        "function_call": st.one_of(
            st.none(), st.fixed_dictionaries({}, optional={"name": _maybe_text})
        ),
    },
)
_chunk_json = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.none(), st.text(max_size=3)),
        "created": st.one_of(st.none(), _small_int),
        "model": st.one_of(st.none(), st.text(max_size=3)),
        "choices": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "index": _small_int,
                    "delta": st.one_of(st.none(), _delta_json),
                    "finish_reason": st.one_of(st.none(), st.sampled_from(["stop", "length"])),
                },
            ),
            max_size=3,
        ),
        "usage": st.one_of(st.none(), st.fixed_dictionaries({"prompt_tokens": _small_int})),
        "extra": json_values(2),
    },
)


@FUZZ
@given(st.lists(_chunk_json, max_size=10))
def test_any_chunk_shaped_json_decodes_to_an_error_or_accumulates(
    payloads: list[dict[str, Any]],
) -> None:
    acc = ChatCompletionAccumulator()
    for payload in payloads:
        try:
            chunk = decode_chunk(json.dumps(payload))
        except msgspec.ValidationError:
            continue  # a wrong type is the decoder's documented answer (a ValueError)
        acc.add(chunk)
    final = acc.final()
    assert msgspec.json.decode(msgspec.json.encode(final), type=ChatCompletion) == final


# --- the accumulator: streamed then accumulated equals the non-stream answer ----------------

_names = st.sampled_from(["get_weather", "search", "get_weather", "lookup"])  # repeats on purpose
_texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)


@st.composite
def _tool_calls(draw: st.DrawFn) -> list[ToolCall]:
    calls = []
    for i in range(draw(st.integers(1, 3))):
        args = json.dumps(draw(json_values(3)))
        calls.append(ToolCall(id=f"call_{i}_x", function=Function(draw(_names), args)))
    return calls


@st.composite
def _messages(draw: st.DrawFn) -> tuple[ChatCompletionMessage, str]:
    kind = draw(st.sampled_from(["content", "tools", "content+tools", "refusal", "empty"]))
    text = draw(_texts.filter(bool)) if "content" in kind else ""
    tools = draw(_tool_calls()) if "tools" in kind else []
    refusal = draw(_texts.filter(bool)) if kind == "refusal" else None
    content: str | None = text
    if not text and (tools or refusal):
        content = None  # what OpenAI answers for a tool call or a refusal
    message = ChatCompletionMessage(content=content, refusal=refusal, tool_calls=tools or None)
    finish = "tool_calls" if tools else draw(st.sampled_from(["stop", "length"]))
    return message, finish


@st.composite
def conversations(draw: st.DrawFn) -> ChatCompletion:
    choices = []
    for index in range(draw(st.integers(1, 3))):  # n = 1..3
        message, finish = draw(_messages())
        choices.append(Choice(index=index, message=message, finish_reason=finish))
    prompt, completion = draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6))
    usage = draw(st.none() | st.just(Usage(prompt, completion, prompt + completion)))
    return ChatCompletion(
        id="chatcmpl-fuzz",
        created=1_700_000_000,
        model="fuzz-model",
        choices=choices,
        usage=usage,
        system_fingerprint=draw(st.none() | st.just("fp_1")),
    )


def _pieces(text: str, rng: random.Random) -> list[str]:
    """``text`` cut at random points, as a tokenizer streams it."""
    if not text:
        return []
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 6))))
    return [text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])]


def _choice_deltas(choice: Choice, style: str, rng: random.Random) -> list[dict[str, Any]]:
    """One choice's stream as ``choices[]`` entries, in a provider's style.

    ``openai``: index on every tool piece, id/name only on the first. ``vllm``: id, type
    and name repeated on every piece. ``ollama``: no index, matched by id.
    """
    message = choice.message
    role: dict[str, Any] = {"role": "assistant"}
    if message.content is not None or rng.random() < 0.5:
        role["content"] = ""
    out: list[dict[str, Any]] = [{"index": choice.index, "delta": role}]
    for piece in _pieces(message.content or "", rng):
        out.append({"index": choice.index, "delta": {"content": piece}})
    for piece in _pieces(message.refusal or "", rng):
        out.append({"index": choice.index, "delta": {"refusal": piece}})
    for position, call in enumerate(message.tool_calls or []):
        head: dict[str, Any] = {"id": call.id, "type": "function"}
        if style != "ollama":
            head["index"] = position
        first = {**head, "function": {"name": call.function.name, "arguments": ""}}
        out.append({"index": choice.index, "delta": {"tool_calls": [first]}})
        for piece in _pieces(call.function.arguments, rng):
            tool: dict[str, Any] = {"function": {"arguments": piece}}
            if style == "openai":
                tool["index"] = position
            elif style == "vllm":
                tool.update(head)
                tool["function"]["name"] = call.function.name
            else:
                tool["id"] = call.id
            out.append({"index": choice.index, "delta": {"tool_calls": [tool]}})
    out.append({"index": choice.index, "delta": {}, "finish_reason": choice.finish_reason})
    return out


def stream_chunks(answer: ChatCompletion, style: str, seed: int) -> list[bytes]:
    """``answer`` as the ``chat.completion.chunk`` JSON a provider streams for it: choices
    interleaved at random (``n > 1``), then the usage chunk with empty ``choices``."""
    rng = random.Random(seed)
    queues = [_choice_deltas(c, style, rng) for c in answer.choices]
    header = {
        "id": answer.id,
        "object": "chat.completion.chunk",
        "created": answer.created,
        "model": answer.model,
        "system_fingerprint": answer.system_fingerprint,
    }
    chunks = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        chunks.append({**header, "choices": [queue.pop(0)]})
    if answer.usage is not None:
        chunks.append({**header, "choices": [], "usage": msgspec.to_builtins(answer.usage)})
    return [msgspec.json.encode(chunk) for chunk in chunks]


@FUZZ
@given(conversations(), st.sampled_from(["openai", "vllm", "ollama"]), st.integers(0, 2**32))
def test_streaming_then_accumulating_equals_the_non_stream_answer(
    answer: ChatCompletion, style: str, seed: int
) -> None:
    acc = ChatCompletionAccumulator()
    for data in stream_chunks(answer, style, seed):
        acc.add(decode_chunk(data))
    final = acc.final()
    assert final == answer
    # Byte for byte on the wire too: the accumulated object encodes like the non-stream one.
    assert msgspec.json.encode(final) == msgspec.json.encode(answer)
    for index, choice in enumerate(answer.choices):
        parsed = acc.tool_calls_parsed(index)
        calls = choice.message.tool_calls or []
        assert [json.dumps(args) for _, args in parsed] == [c.function.arguments for c in calls]
