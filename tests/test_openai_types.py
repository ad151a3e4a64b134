"""The msgspec types: decoding what providers send, encoding what OpenAI sends."""

from __future__ import annotations

import gc
import json

import msgspec
import pytest

import aifetch.openai as oa
from aifetch.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChunkChoice,
    Function,
    ToolCall,
    Usage,
    decode_chunk,
)

OPENAI_CHUNK = (
    b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1735000000,'
    b'"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_1",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
    b'"logprobs":null,"finish_reason":null}],"usage":null}'
)

# A non-streaming answer as OpenAI sends it, including fields the types do not model.
OPENAI_TOOL_ANSWER = {
    "id": "chatcmpl-2",
    "object": "chat.completion",
    "created": 1735000001,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": 1}'},
                    }
                ],
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_2",
}


def test_public_names_are_sorted_and_importable() -> None:
    assert oa.__all__ == sorted(oa.__all__)
    for name in oa.__all__:
        assert getattr(oa, name) is not None


def test_decode_openai_chunk() -> None:
    chunk = decode_chunk(OPENAI_CHUNK)
    assert chunk == ChatCompletionChunk(
        id="chatcmpl-1",
        created=1735000000,
        model="gpt-4o-mini",
        service_tier="default",
        system_fingerprint="fp_1",
        choices=[ChunkChoice(index=0, delta=ChoiceDelta(role="assistant", content=""))],
    )


def test_decode_accepts_str_as_well_as_bytes() -> None:
    assert decode_chunk(OPENAI_CHUNK.decode()) == decode_chunk(OPENAI_CHUNK)


def test_omitted_fields_take_defaults_and_unknown_fields_are_ignored() -> None:
    # Azure's prompt-filter chunk: empty header values, an extra top-level field.
    chunk = decode_chunk(
        b'{"choices":[],"created":0,"id":"","model":"","object":"",'
        b'"prompt_filter_results":[{"prompt_index":0}]}'
    )
    assert chunk == ChatCompletionChunk(object="")
    # A choice with no delta (Azure's trailing content-filter chunk).
    chunk = decode_chunk(b'{"choices":[{"index":0,"content_filter_results":{}}]}')
    assert chunk.choices == [ChunkChoice(index=0, delta=ChoiceDelta())]


def test_tool_call_delta_without_index_decodes() -> None:
    chunk = decode_chunk(
        b'{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"c","function":'
        b'{"name":"f","arguments":"{}"}}]}}]}'
    )
    assert chunk.choices[0].delta.tool_calls == [
        ChoiceDeltaToolCall(
            index=None, id="c", function=ChoiceDeltaToolCallFunction(name="f", arguments="{}")
        )
    ]


def test_wrong_shape_raises_msgspec_validation_error() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.choices\[0\]\.index"):
        decode_chunk(b'{"choices":[{"index":"zero"}]}')
    with pytest.raises(msgspec.DecodeError):
        decode_chunk(b'{"choices":')


def test_chat_completion_round_trips_to_openai_shape() -> None:
    completion = msgspec.json.decode(json.dumps(OPENAI_TOOL_ANSWER), type=ChatCompletion)
    assert completion.choices[0].message.tool_calls == [
        ToolCall(id="call_1", function=Function(name="f", arguments='{"a": 1}'))
    ]
    encoded = json.loads(msgspec.json.encode(completion))
    expected = json.loads(json.dumps(OPENAI_TOOL_ANSWER))
    del expected["choices"][0]["message"]["annotations"]  # not modelled
    assert encoded == expected


def test_encoding_a_plain_message_matches_openai_nulls_and_absences() -> None:
    completion = ChatCompletion(
        id="x",
        created=1,
        model="m",
        choices=[Choice(message=ChatCompletionMessage(content="hi"), finish_reason="stop")],
    )
    message = json.loads(msgspec.json.encode(completion))["choices"][0]
    # OpenAI sends refusal and logprobs as null, and leaves tool_calls (and the extensions)
    # out when there are none.
    assert message == {
        "index": 0,
        "message": {"role": "assistant", "content": "hi", "refusal": None},
        "logprobs": None,
        "finish_reason": "stop",
    }


def test_explicit_null_tool_calls_survive_a_round_trip() -> None:
    raw = b'{"choices":[{"message":{"role":"assistant","content":"x","tool_calls":null}}]}'
    completion = msgspec.json.decode(raw, type=ChatCompletion)
    assert completion.choices[0].message.tool_calls is None
    encoded = json.loads(msgspec.json.encode(completion))
    assert encoded["choices"][0]["message"]["tool_calls"] is None


def test_usage_details_are_kept_whole_and_left_out_when_absent() -> None:
    usage = msgspec.json.decode(
        b'{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,'
        b'"prompt_tokens_details":{"cached_tokens":1,"vendor_tokens":9}}',
        type=Usage,
    )
    assert usage.prompt_tokens_details == {"cached_tokens": 1, "vendor_tokens": 9}
    assert json.loads(msgspec.json.encode(usage)) == {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 1, "vendor_tokens": 9},
    }


def test_chunk_encoding_keeps_deltas_sparse() -> None:
    chunk = ChatCompletionChunk(
        id="c", created=2, model="m", choices=[ChunkChoice(delta=ChoiceDelta(content="Hi"))]
    )
    encoded = json.loads(msgspec.json.encode(chunk))
    assert encoded["choices"] == [
        {"index": 0, "delta": {"content": "Hi"}, "logprobs": None, "finish_reason": None}
    ]
    assert decode_chunk(msgspec.json.encode(chunk)) == chunk


def test_decoded_objects_are_not_tracked_by_the_cycle_collector() -> None:
    chunk = decode_chunk(OPENAI_CHUNK)
    assert not gc.is_tracked(chunk)
    assert not gc.is_tracked(chunk.choices[0])
    assert not gc.is_tracked(chunk.choices[0].delta)
