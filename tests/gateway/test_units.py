"""Pure logic: error shaping, request parsing and patching, mock chunks, block filter."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aifetch.gateway import GatewayError, Pipe
from aifetch.gateway._call import Call, Reply
from aifetch.gateway._codes import UPSTREAM_STATUS
from aifetch.gateway._commit import Scan, scan, scan_batch
from aifetch.gateway._config import RetryConfig
from aifetch.gateway._dispatch import _wait
from aifetch.gateway._errors import error_event
from aifetch.gateway._events import is_content_data, is_error_data
from aifetch.gateway._failure import Failure
from aifetch.gateway._mock import chat_chunks, split_text
from aifetch.gateway._parse import decode_fields, patch_body, usage_of
from aifetch.gateway._pipes import request_policy
from aifetch.gateway._relay import RelayOutcome, _BlockFilter, strip_null_usage
from aifetch.gateway._usage import Usage
from aifetch.sse import parse_block


def test_error_body_is_openai_shaped() -> None:
    err = GatewayError(404, "no such model", param="model", code="model_not_found")
    assert msgspec.json.decode(err.body()) == {
        "error": {
            "message": "no such model",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    assert GatewayError(502, "x").type == "upstream_error"
    assert GatewayError(429, "x").type == "rate_limit_error"


def test_error_event_is_an_sse_error_event() -> None:
    block = error_event(GatewayError(502, "upstream reset", code="upstream_reset"))
    event = parse_block(block)
    assert event is not None
    assert event.event == "error"
    assert msgspec.json.decode(event.data)["error"]["code"] == "upstream_reset"


def test_decode_fields_reads_only_routing_fields() -> None:
    fields = decode_fields(
        b'{"messages": [1, 2], "model": "m", "stream": true,'
        b' "stream_options": {"include_usage": true}}'
    )
    assert (fields.model, fields.stream, fields.wants_usage) == ("m", True, True)


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (b"nope", "invalid_json", None),
        (b"{}", "missing_required_parameter", "model"),
        (b'{"model": "m", "stream": 1}', None, "stream"),
    ],
)
def test_decode_fields_errors(body: bytes, code: str | None, param: str | None) -> None:
    with pytest.raises(GatewayError) as info:
        decode_fields(body)
    assert info.value.status == 400
    assert info.value.code == code
    assert info.value.param == param


def test_patch_body_untouched_when_nothing_changes() -> None:
    body = b'{"model":"m","stream":false}'
    assert patch_body(body, decode_fields(body), "m", force_usage=False) is body


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


# Fields decode_fields reads and checks; any other field passes through untouched.
ROUTING_FIELDS = {"model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n"}


@given(
    extra=st.dictionaries(
        st.text(max_size=6).filter(lambda k: k not in ROUTING_FIELDS),
        json_values,
        max_size=4,
    ),
    options=st.none()
    | st.sampled_from([{}, {"include_usage": False}, {"include_usage": True}, {"other": 1}]),
    rename=st.booleans(),
)
def test_patch_body_changes_only_model_and_usage(
    extra: dict[str, Any], options: Any, rename: bool
) -> None:
    data: dict[str, Any] = {"model": "public", **extra, "stream": True}
    if options is not None:
        data["stream_options"] = options
    body = msgspec.json.encode(data)
    patched = msgspec.json.decode(
        patch_body(body, decode_fields(body), "inner" if rename else "public", True)
    )
    expected = dict(data, model="inner" if rename else "public")
    expected["stream_options"] = {**(options or {}), "include_usage": True}
    assert patched == expected


def test_patch_body_splices_without_decoding() -> None:
    body = b'  {"model":"m","stream":true}'
    patched = patch_body(body, decode_fields(body), "m", force_usage=True)
    assert patched == b'  {"stream_options":{"include_usage":true},"model":"m","stream":true}'


@given(st.text(min_size=1, max_size=200), st.integers(min_value=1, max_value=50))
def test_split_text_rejoins(text: str, pieces: int) -> None:
    parts = split_text(text, pieces)
    assert "".join(parts) == text
    assert len(parts) == min(pieces, len(text))
    assert all(parts)


def test_mock_chunks_are_deterministic_and_end_with_done() -> None:
    blocks = chat_chunks(
        "m", ["a", "b"], {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    )
    assert blocks == chat_chunks(
        "m", ["a", "b"], {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    )
    assert blocks[-1] == b"data: [DONE]\n\n"
    usage = msgspec.json.decode(blocks[-2][6:])
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 2
    assert [
        msgspec.json.decode(b[6:])["choices"][0]["delta"].get("content") for b in blocks[1:3]
    ] == ["a", "b"]


def chunk(delta: dict[str, Any] | None = None, **extra: Any) -> bytes:
    obj = {
        "id": "x",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": None}],
        **extra,
    }
    return b"data: " + msgspec.json.encode(obj) + b"\n\n"


USAGE = b'data: {"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\n'
DONE = b"data: [DONE]\n\n"


def run_filter(blocks: list[bytes], strip: bool) -> tuple[bytes, RelayOutcome]:
    outcome = RelayOutcome()
    out = _BlockFilter(outcome, strip, Reply(200, [], upstream="up")).process(b"".join(blocks))
    return out, outcome


def test_filter_passes_blocks_through_unchanged() -> None:
    blocks = [chunk({"content": "an error occurred in the story"}), b": ping\n\n", DONE]
    out, outcome = run_filter(blocks, strip=True)
    assert out == b"".join(blocks)
    assert outcome.done
    assert outcome.error is None
    assert outcome.usage is None


def test_filter_single_block_is_sent_without_copy() -> None:
    block = chunk({"content": "x"})
    out, _ = run_filter([block], strip=True)
    assert out is block


def test_filter_strips_and_records_usage() -> None:
    first = chunk({"content": "hi"})
    out, outcome = run_filter([first, USAGE, DONE], strip=True)
    assert out == first + DONE
    assert outcome.usage == Usage(3, 4)
    kept, outcome = run_filter([first, USAGE, DONE], strip=False)
    assert kept == first + USAGE + DONE
    assert outcome.usage == Usage(3, 4)


def test_filter_removes_null_usage_members_when_stripping() -> None:
    block = b'data: {"id":"x","choices":[],"usage":null}\n\n'
    out, _ = run_filter([block], strip=True)
    assert out == b'data: {"id":"x","choices":[]}\n\n'
    out, _ = run_filter([block], strip=False)
    assert out == block


def test_filter_stops_at_error_event() -> None:
    first = chunk({"content": "hi"})
    error = b'data: {"error": {"message": "overloaded"}}\n\n'
    out, outcome = run_filter([first, error, DONE], strip=True)
    assert out == first
    assert outcome.error is not None
    assert "overloaded" in outcome.error.message
    assert not outcome.done


def test_content_and_error_classification() -> None:
    assert not is_content_data(
        msgspec.json.encode({"choices": [{"delta": {"role": "assistant", "content": ""}}]}).decode()
    )
    assert is_content_data(msgspec.json.encode({"choices": [{"delta": {"content": "x"}}]}).decode())
    assert is_content_data(msgspec.json.encode({"choices": [{"text": "x"}]}).decode())
    assert is_content_data("[DONE]")
    assert is_error_data('{"error": {"message": "m"}}')
    assert not is_error_data('{"choices": [], "note": "error"}')


def test_retry_delay_honours_server_wait_and_caps() -> None:
    policy = RetryConfig(attempts=3, backoff=1.0, cap=2.0, max_server_wait=5.0)

    def failed(retry_after: float | None = None, retryable: bool = True) -> Failure:
        return Failure(UPSTREAM_STATUS, "x", 429, retryable, retry_after)

    assert _wait(policy, 0, failed(3.0)) == 3.0
    assert _wait(policy, 0, failed(30.0)) is None
    # Full jitter over the doubled, capped backoff.
    assert all(0 <= _wait(policy, 0, failed()) < 1.0 for _ in range(20))  # type: ignore[operator]
    assert all(0 <= _wait(policy, 1, failed()) < 2.0 for _ in range(20))  # type: ignore[operator]
    # ``attempts`` counts every try: after the third, no wait; nor for what cannot succeed.
    assert _wait(policy, 2, failed()) is None
    assert _wait(policy, 0, failed(retryable=False)) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"model" : "pub", "x": 1}', b'{"model" : "inner", "x": 1}'),
        # A second "model" (nested key or string) makes the bytes path step aside.
        (b'{"model":"pub","stop":["model"]}', b'{"model":"inner","stop":["model"]}'),
        (b'{"model":"pub","meta":{"model":"pub"}}', b'{"model":"inner","meta":{"model":"pub"}}'),
        # The key spelt with an escape, and a nested plain "model": decoded, not spliced.
        (
            b'{"mod\\u0065l":"pub","meta":{"model":"pub"}}',
            b'{"model":"inner","meta":{"model":"pub"}}',
        ),
    ],
)
def test_patch_body_renames_only_the_top_level_model(body: bytes, expected: bytes) -> None:
    patched = patch_body(body, decode_fields(body), "inner", force_usage=False)
    assert msgspec.json.decode(patched) == msgspec.json.decode(expected)


def _usage_by_full_decode(content: bytes) -> Usage | None:
    try:
        data = msgspec.json.decode(content)
    except msgspec.DecodeError:
        return None
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    return Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))


usage_objects = st.fixed_dictionaries(
    {"prompt_tokens": st.integers(0, 10**6), "completion_tokens": st.integers(0, 10**6)}
)
# Keys and strings that look like the usage key, to tempt the tail read.
usage_like = st.sampled_from(["usage", '"usage', 'x"usage', "usage\\", " usage"])


@given(
    before=st.dictionaries(st.text(max_size=5) | usage_like, json_values | usage_like, max_size=3),
    usage=st.none() | usage_objects,
    after=st.dictionaries(
        st.text(max_size=5) | usage_like,
        json_values | usage_like | st.dictionaries(usage_like, usage_objects, max_size=1),
        max_size=3,
    ),
    indent=st.booleans(),
)
def test_usage_of_agrees_with_decoding_the_whole_body(
    before: dict[str, Any], usage: dict[str, int] | None, after: dict[str, Any], indent: bool
) -> None:
    data = {k: v for k, v in before.items() if k != "usage"}
    if usage is not None:
        data["usage"] = usage
    data.update({k: v for k, v in after.items() if k != "usage"})
    content = msgspec.json.encode(data)
    if indent:
        content = msgspec.json.format(content, indent=2)
    assert usage_of(content) == _usage_by_full_decode(content)


@pytest.mark.parametrize(
    "content",
    [
        b'{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4}}',
        b'{"usage":{"prompt_tokens":3,"completion_tokens":4},"system_fingerprint":"fp"}',
        # The last match is nested, a string value, or a key with an escaped quote.
        b'{"usage":{"prompt_tokens":3,"completion_tokens":4},"meta":{"usage":{"prompt_tokens":9}}}',
        b'{"usage":{"prompt_tokens":3,"completion_tokens":4},"note":"usage"}',
        b'{"usage":{"prompt_tokens":3,"completion_tokens":4},"\\"usage":{"prompt_tokens":9}}',
        b'{"usage" :\n {"prompt_tokens":3,"completion_tokens":4}\n}',
        b'{"usage":null}',
        b'{"id":"x"}',
        b'{"usage":{"prompt_tokens":3',
        b'["usage"]',
    ],
)
def test_usage_of_reads_only_the_top_level_usage(content: bytes) -> None:
    assert usage_of(content) == _usage_by_full_decode(content)


def test_histogram_buckets_are_cumulative_and_le_inclusive() -> None:
    from aifetch.gateway._metrics import Metrics

    metrics = Metrics()
    for value in (0.0001, 0.0002, 5.0):  # on a bound, between bounds, past the last bound
        metrics.added("m", value)
    text = metrics.render().decode()
    assert 'aifetch_gateway_added_latency_seconds_bucket{le="0.0001",model="m"} 1.0' in text
    assert 'aifetch_gateway_added_latency_seconds_bucket{le="0.00025",model="m"} 2.0' in text
    assert 'aifetch_gateway_added_latency_seconds_bucket{le="1.0",model="m"} 2.0' in text
    assert 'aifetch_gateway_added_latency_seconds_bucket{le="+Inf",model="m"} 3.0' in text
    assert 'aifetch_gateway_added_latency_seconds_count{model="m"} 3.0' in text


_WS = st.text(alphabet=" \t\r\n", max_size=3)


@given(
    st.dictionaries(
        st.sampled_from(["id", "object", "choices", "model", "x"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=8), st.lists(st.integers())),
        max_size=4,
    ),
    st.integers(0, 4),
    _WS,
    _WS,
    _WS,
)
def test_null_usage_is_stripped_in_any_spelling(
    members: dict[str, Any], at: int, before: str, around: str, after: str
) -> None:
    from aifetch.gateway._relay import strip_null_usage

    parts = [msgspec.json.encode(k).decode() + ":" + msgspec.json.encode(v).decode()
             for k, v in members.items()]  # fmt: skip
    usage = f'{before}"usage"{around}:{around}null{after}'
    parts.insert(min(at, len(parts)), usage)
    chunk = ("{" + ",".join(parts) + "}").encode()
    block = b"data: " + chunk.replace(b"\n", b" ") + b"\n\n"
    stripped = strip_null_usage(block)
    assert msgspec.json.decode(stripped[6:-2]) == members
    assert b'"usage"' not in stripped


def test_usage_reads_cached_and_reasoning_tokens_wherever_it_is_found() -> None:
    usage = (
        b'{"prompt_tokens":30,"completion_tokens":12,"total_tokens":42,'
        b'"prompt_tokens_details":{"cached_tokens":16,"audio_tokens":0},'
        b'"completion_tokens_details":{"reasoning_tokens":8}}'
    )
    expected = Usage(30, 12, 16, 8)
    assert usage_of(b'{"id":"x","choices":[],"usage":' + usage + b"}") == expected
    outcome = RelayOutcome()
    block = b'data: {"id":"x","choices":[],"usage":' + usage + b"}\n\n"
    _BlockFilter(outcome, True, Reply(200, [], upstream="up")).process(block)
    assert outcome.usage == expected
    # Details that are null or missing count as none.
    nulls = b'{"usage":{"prompt_tokens":3,"completion_tokens":1,"prompt_tokens_details":null}}'
    assert usage_of(nulls) == Usage(3, 1)


_BLOCKS = [
    chunk({"content": "hi"}),
    chunk({"content": "an error in the story"}),
    chunk({"content": "say [DONE] now"}),
    chunk({"role": "assistant", "content": ""}),
    b'data: {"id":"x","choices":[{"delta":{"content":"a"}}],"usage":null}\n\n',
    b'data: {"id":"x","usage": null,"choices":[]}\n\n',
    USAGE,
    b": ping\n\n",
    b"\n",
    b'data: {"error": {"message": "overloaded"}}\n\n',
    b'event: error\ndata: {"error": {"message": "cut"}}\n\n',
    DONE,
]


@given(st.lists(st.sampled_from(_BLOCKS), max_size=12), st.booleans())
def test_the_batch_is_looked_at_only_where_it_must_be(blocks: list[bytes], strip: bool) -> None:
    # The relay's cut (blocks before the first one that needs a look go out untouched)
    # gives what looking at every block gives.
    batch = b"".join(blocks)
    fast, slow = RelayOutcome(), RelayOutcome()
    reply = Reply(200, [], upstream="up")
    got = _BlockFilter(fast, strip, reply).process(batch)
    everything = _BlockFilter(slow, strip, reply)
    expected = everything._by_block(strip_null_usage(batch) if strip else batch)
    assert got == expected
    assert fast.usage == slow.usage
    assert (fast.error is None) == (slow.error is None)
    # Completion is read from the last [DONE]; it can only differ after an error, which
    # ends the stream with the same error event either way.
    assert fast.done == slow.done or fast.error is not None


@given(st.lists(st.sampled_from(_BLOCKS), max_size=12))
def test_the_commit_scan_of_a_whole_read_agrees_with_one_block_at_a_time(
    blocks: list[bytes],
) -> None:
    by_block, joined = Scan(), Scan()
    verdict = scan(blocks, by_block)
    assert scan_batch(b"".join(blocks), joined) == verdict
    assert b"".join(joined.held) == b"".join(by_block.held)
    assert joined.error == by_block.error


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"a","max_tokens":100000,"max_tokens":null}',
        b'{"model":"a","stream":true,"stream":null}',
        b'{"model":"a","n":5,"n":null}',
        b'{"model":"a","model":"b"}',
        b'{"mod\\u0065l":"a","model":"b"}',
    ],
)
def test_a_repeated_routing_key_is_forwarded_once_even_when_the_last_is_null(body: bytes) -> None:
    from aifetch.gateway._parse import one_value_per_key

    fields = decode_fields(body)
    sent = one_value_per_key(body)
    assert sent != body
    for key in (b'"model"', b'"max_tokens"', b'"stream"', b'"n"'):
        assert sent.count(key) <= 1
    assert decode_fields(sent) == fields


@pytest.mark.parametrize(
    ("route", "body", "sent"),
    [
        ("/v1/chat/completions", {}, {"max_tokens": 50}),
        ("/v1/chat/completions", {"max_completion_tokens": 900}, {"max_completion_tokens": 50}),
        ("/v1/chat/completions", {"max_tokens": 20}, {"max_tokens": 20}),
        ("/v1/completions", {"max_tokens": 900}, {"max_tokens": 50}),
        # The Responses API's cap has its own name: capped there, and no chat field added
        # that the API would refuse.
        ("/v1/responses", {"max_output_tokens": 900}, {"max_output_tokens": 50}),
        ("/v1/responses", {}, {"max_output_tokens": 50}),
        ("/v1/embeddings", {}, {}),
    ],
)
async def test_request_policy_caps_each_routes_own_output_field(
    route: str, body: dict[str, Any], sent: dict[str, Any]
) -> None:
    assert await _sent_through(request_policy(max_tokens=50), route, body) == [
        {"model": "m", **sent}
    ]


async def _sent_through(policy: Pipe, route: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The bodies ``policy`` passes on for one call of ``route`` with ``body``."""
    seen: list[dict[str, Any]] = []

    async def upstream(call: Call) -> Reply:
        seen.append(call.body)
        return Reply(200, [], b"{}")

    await policy(Call(route, {"model": "m", **body}), upstream)
    return seen


SYSTEM = {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize(
    ("route", "body", "sent"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]},
         {"messages": [SYSTEM, {"role": "user", "content": "hi"}]}),
        # The Responses API takes its messages in ``input``: a string is the user's turn.
        ("/v1/responses", {"input": "hi"}, {"input": [SYSTEM, {"role": "user", "content": "hi"}]}),
        ("/v1/responses", {"input": [{"role": "user", "content": "hi"}]},
         {"input": [SYSTEM, {"role": "user", "content": "hi"}]}),
        ("/v1/responses", {"previous_response_id": "resp_1"},
         {"previous_response_id": "resp_1", "input": [SYSTEM]}),
        ("/v1/embeddings", {"input": "hi"}, {"input": "hi"}),
    ],
)  # fmt: skip
async def test_request_policy_puts_the_system_prompt_first_on_each_route(
    route: str, body: dict[str, Any], sent: dict[str, Any]
) -> None:
    assert await _sent_through(request_policy(system_prompt="Be brief."), route, body) == [
        {"model": "m", **sent}
    ]
