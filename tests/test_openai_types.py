"""The msgspec types: decoding what providers send, encoding what OpenAI sends, and no
``UNSET`` ever showing through."""

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
    # The extensions OpenAI leaves out come back as null, as openai-python dumps them.
    expected["choices"][0]["message"].update(
        reasoning_content=None, reasoning_signature=None, function_call=None
    )
    assert encoded == expected
    assert msgspec.json.decode(msgspec.json.encode(completion), type=ChatCompletion) == completion


def test_encoding_a_plain_message_matches_openai_nulls() -> None:
    completion = ChatCompletion(
        id="x",
        created=1,
        model="m",
        choices=[Choice(message=ChatCompletionMessage(content="hi"), finish_reason="stop")],
    )
    message = json.loads(msgspec.json.encode(completion))["choices"][0]
    # OpenAI sends refusal and logprobs as null; what it leaves out is written as null too.
    assert message == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": "hi",
            "refusal": None,
            "reasoning_content": None,
            "reasoning_signature": None,
            "tool_calls": None,
            "function_call": None,
        },
        "logprobs": None,
        "finish_reason": "stop",
    }


def test_absent_and_null_tool_calls_both_read_none() -> None:
    for raw in (
        b'{"choices":[{"message":{"role":"assistant","content":"x","tool_calls":null}}]}',
        b'{"choices":[{"message":{"role":"assistant","content":"x"}}]}',
    ):
        completion = msgspec.json.decode(raw, type=ChatCompletion)
        assert completion.choices[0].message.tool_calls is None
        encoded = json.loads(msgspec.json.encode(completion))
        assert encoded["choices"][0]["message"]["tool_calls"] is None


def test_usage_details_are_kept_whole_and_none_when_absent() -> None:
    usage = msgspec.json.decode(
        b'{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,'
        b'"prompt_tokens_details":{"cached_tokens":1,"vendor_tokens":9}}',
        type=Usage,
    )
    assert usage.prompt_tokens_details == {"cached_tokens": 1, "vendor_tokens": 9}
    assert usage.completion_tokens_details is None
    assert json.loads(msgspec.json.encode(usage)) == {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 1, "vendor_tokens": 9},
        "completion_tokens_details": None,
    }


def _public_structs() -> list[type[msgspec.Struct]]:
    return [
        t
        for t in (getattr(oa, name) for name in oa.__all__)
        if isinstance(t, type) and issubclass(t, msgspec.Struct)
    ]


def _unset_paths(value: object, path: str = "") -> list[str]:
    """Where msgspec's UNSET sits inside ``value`` (read as a caller reads it)."""
    if value is msgspec.UNSET:
        return [path or "."]
    found = []
    if isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            found += _unset_paths(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _unset_paths(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            found += _unset_paths(item, f"{path}[{key!r}]")
    return found


@pytest.mark.parametrize("kind", _public_structs(), ids=lambda t: t.__name__)
def test_no_public_type_shows_unset_for_an_absent_field(kind: type[msgspec.Struct]) -> None:
    # Every field left out, as made by a caller and as decoded from a provider's "{}".
    for value in (kind(), msgspec.json.decode(b"{}", type=kind)):
        assert _unset_paths(value) == []
        assert "UNSET" not in repr(value)
        assert "UNSET" not in str(msgspec.structs.asdict(value))
        for name in kind.__struct_fields__:
            field = getattr(value, name)
            assert not isinstance(field, msgspec.UnsetType), name


def test_a_usage_chunk_and_an_accumulated_answer_print_without_unset() -> None:
    chunk = decode_chunk(
        b'{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,'
        b'"total_tokens":7}}'
    )
    assert chunk.usage is not None
    assert "UNSET" not in repr(chunk.usage)
    assert chunk.usage.prompt_tokens_details is None
    acc = oa.ChatCompletionAccumulator()
    acc.add(decode_chunk(b'{"choices":[{"delta":{"role":"assistant","content":"Hi"}}]}'))
    acc.add(chunk)
    final = acc.final()
    assert _unset_paths(final) == []
    assert "UNSET" not in repr(final)
    message = final.choices[0].message
    assert (message.tool_calls, message.function_call, message.reasoning_content) == (
        None,
        None,
        None,
    )
    assert final.choices[0].message.content == "Hi"


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
