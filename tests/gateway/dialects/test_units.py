"""The dialect routes' pure pieces: each wire format's stream rules (the commit point's
verdicts, the relay's filter at every split, the final error event), usage in the three
shapes, the response id map, and the caller betas passed on."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from aifetch.gateway import GatewayError
from aifetch.gateway._call import Reply
from aifetch.gateway._codes import UPSTREAM_INCOMPLETE
from aifetch.gateway._commit import Scan, scan
from aifetch.gateway._kinds import caller_betas
from aifetch.gateway._parse import usage_of
from aifetch.gateway._relay import RelayOutcome
from aifetch.gateway._response_ids import Made, ResponseIds
from aifetch.gateway._responses import response_id_of
from aifetch.gateway._rules import ANTHROPIC_RULES, CHAT_RULES, RESPONSES_RULES, StreamRules
from aifetch.gateway._usage import IOUsageFields, Usage, UsageFields
from aifetch.sse import SSEBlockSplitter
from tests.support import fake_anthropic
from tests.support.fake_responses import sse as responses_sse

from .conftest import sse_events


def blocks_of(data: bytes) -> list[bytes]:
    return fake_anthropic.blocks(data)


def verdict(rules: StreamRules, data: bytes) -> tuple[str, str]:
    state = Scan(rules)
    return scan(blocks_of(data), state), state.error


# --------------------------------------------------------------------- commit point

START = fake_anthropic.sse(
    "message_start", {"type": "message_start", "message": {"id": "m", "usage": {}}}
)
PING = fake_anthropic.sse("ping", {"type": "ping"})


def block_start(block: dict[str, Any]) -> bytes:
    return fake_anthropic.sse(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (START + PING, "waiting"),
        (START + block_start({"type": "text", "text": ""}), "waiting"),
        (START + block_start({"type": "thinking", "thinking": ""}), "waiting"),
        (START + block_start({"type": "text", "text": "Hi"}), "committed"),
        (START + block_start({"type": "tool_use", "id": "t", "name": "f"}), "committed"),
        (
            START
            + fake_anthropic.sse(
                "content_block_delta",
                {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "x"}},
            ),
            "committed",
        ),
        # Without its event: lines (a proxy dropped them) the type in the data counts.
        (b'data: {"type":"message_start","message":{}}\n\n', "waiting"),
        (b'data: {"type":"content_block_delta","index":0,"delta":{}}\n\n', "committed"),
    ],
)
def test_anthropic_verdicts(data: bytes, expected: str) -> None:
    assert verdict(ANTHROPIC_RULES, data)[0] == expected


def test_an_anthropic_error_before_content_fails_with_its_message() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert verdict(ANTHROPIC_RULES, START + fake_anthropic.sse("error", error)) == (
        "failed",
        "Overloaded",
    )
    unnamed = b"data: " + msgspec.json.encode(error) + b"\n\n"
    assert verdict(ANTHROPIC_RULES, START + unnamed) == ("failed", "Overloaded")


def responses_event(kind: str, **fields: Any) -> bytes:
    return responses_sse({"type": kind, **fields}, 0)


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        (["response.created", "response.in_progress"], "waiting"),
        (["response.queued"], "waiting"),
        (["response.created", "response.output_item.added"], "committed"),
        (["response.created", "response.output_text.delta"], "committed"),
        (["response.created", "response.completed"], "committed"),
    ],
)
def test_responses_verdicts(kinds: list[str], expected: str) -> None:
    data = b"".join(responses_event(kind, response={"id": "r"}) for kind in kinds)
    assert verdict(RESPONSES_RULES, data)[0] == expected


def test_a_responses_error_before_output_fails_with_its_message() -> None:
    created = responses_event("response.created", response={"id": "r"})
    error = responses_event("error", code="server_error", message="Boom")
    failed = responses_event(
        "response.failed", response={"id": "r", "error": {"code": "x", "message": "Failed!"}}
    )
    assert verdict(RESPONSES_RULES, created + error) == ("failed", "Boom")
    assert verdict(RESPONSES_RULES, created + failed) == ("failed", "Failed!")


def test_chat_rules_are_the_chat_commit_rule() -> None:
    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    text = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    error = b'event: error\ndata: {"error":{"message":"nope"}}\n\n'
    assert verdict(CHAT_RULES, role)[0] == "waiting"
    assert verdict(CHAT_RULES, role + text)[0] == "committed"
    assert verdict(CHAT_RULES, role + error) == ("failed", "nope")


# --------------------------------------------------------------------- relay filters


def splits(data: bytes, seed: int = 7) -> Iterator[list[bytes]]:
    """Whole, a byte at a time, and 60 seeded random cuttings."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    for _ in range(60):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 30)))
        yield [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def relay_through(rules: StreamRules, pieces: list[bytes]) -> tuple[bytes, RelayOutcome]:
    """What the relay's loop does with ``pieces`` as reads: cut at complete blocks, each
    batch through the stream's filter."""
    outcome = RelayOutcome()
    filt = rules.Filter(outcome, False, Reply(200, [], upstream="up"))
    splitter = SSEBlockSplitter()
    out = []
    for piece in pieces:
        batch = splitter.feed_joined(piece)
        if batch:
            out.append(filt.process(batch))
        if outcome.error is not None:
            break
    return b"".join(out), outcome


ANTHROPIC_COMPLETE = [
    "anthropic_text.sse",
    "anthropic_cache_usage.sse",
    "anthropic_usage_in_delta.sse",
    "anthropic_thinking.sse",
    "anthropic_parallel_tools.sse",
]


def anthropic_usage(data: bytes) -> Usage | None:
    """The transcript's usage as Anthropic means it: message_start's figures, updated by
    each message_delta's cumulative ones (``None`` when it reports none)."""
    usage: dict[str, Any] = {}
    for name, payload in sse_events(data):
        event = json.loads(payload)
        found = (event.get("message") or {}).get("usage") if name == "message_start" else None
        found = found or (event.get("usage") if name == "message_delta" else None)
        usage.update({k: v for k, v in (found or {}).items() if v is not None})
    if not usage:
        return None
    read = usage.get("cache_read_input_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    thinking = (usage.get("output_tokens_details") or {}).get("thinking_tokens") or 0
    prompt = usage.get("input_tokens", 0) + read + written
    return Usage(prompt, usage.get("output_tokens", 0), read, thinking)


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize("name", ANTHROPIC_COMPLETE)
def test_the_anthropic_relay_passes_bytes_and_reads_usage_at_every_split(
    name: str, crlf: bool
) -> None:
    data = fake_anthropic.load(name)
    if crlf:  # line ends other than LF take the filter's other way
        data = data.replace(b"\n", b"\r\n")
    expected = anthropic_usage(data)
    for pieces in splits(data):
        out, outcome = relay_through(ANTHROPIC_RULES, pieces)
        assert out == data
        assert outcome.done
        assert outcome.error is None
        assert outcome.usage == expected


def test_the_anthropic_relay_stops_at_an_error_event_at_every_split() -> None:
    data = fake_anthropic.load("anthropic_overloaded.sse")
    before_error = data[: data.index(b"event: error")]
    for pieces in splits(data):
        out, outcome = relay_through(ANTHROPIC_RULES, pieces)
        assert out == before_error
        assert not outcome.done
        assert outcome.error is not None
        assert outcome.error.code == "upstream_error_event"
        assert "Overloaded" in outcome.error.message


def responses_stream() -> bytes:
    usage = {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 40},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 8},
        "total_tokens": 120,
    }
    # "error" in an answer's text, and "error": null in every response object, are not
    # errors.
    return b"".join(
        [
            responses_event("response.created", response={"id": "r", "error": None}),
            responses_event("response.output_item.added", item={"id": "i"}),
            responses_event("response.output_text.delta", delta="no error here"),
            responses_event(
                "response.completed", response={"id": "r", "error": None, "usage": usage}
            ),
        ]
    )


def test_the_responses_relay_reads_usage_from_response_completed_at_every_split() -> None:
    data = responses_stream()
    for pieces in splits(data):
        out, outcome = relay_through(RESPONSES_RULES, pieces)
        assert out == data
        assert outcome.done
        assert outcome.error is None
        assert outcome.usage == Usage(100, 20, 40, 8)


def test_the_responses_relay_stops_at_response_failed() -> None:
    head = responses_stream().split(b"event: response.completed")[0]
    failed = responses_event(
        "response.failed", response={"id": "r", "error": {"code": "x", "message": "Failed!"}}
    )
    out, outcome = relay_through(RESPONSES_RULES, [head + failed])
    assert out == head
    assert outcome.error is not None
    assert "Failed!" in outcome.error.message


@pytest.mark.parametrize("rules", [ANTHROPIC_RULES, RESPONSES_RULES])
def test_the_relay_scrubs_secrets_in_named_events(rules: StreamRules) -> None:
    from aifetch.gateway._secrets import Secrets

    reply = Reply(200, [], upstream="up")
    outcome = RelayOutcome()
    filt = rules.Filter(outcome, False, reply)
    filt.secrets = Secrets(["sk-secret-value-123"])
    data = fake_anthropic.sse("content_block_delta", {"delta": {"text": "sk-secret-value-123"}})
    assert b"sk-secret" not in filt.process(data)


def test_the_final_error_event_speaks_each_wire_format() -> None:
    err = UPSTREAM_INCOMPLETE("upstream 'x' ended the stream before message_stop")
    ((name, data),) = sse_events(ANTHROPIC_RULES.error_event(err))
    assert name == "error"
    assert json.loads(data) == {
        "type": "error",
        "error": {"type": "api_error", "message": err.message},
    }
    ((name, data),) = sse_events(RESPONSES_RULES.error_event(err))
    payload = json.loads(data)
    assert name == "error"
    assert (payload["type"], payload["code"], payload["message"]) == (
        "error",
        "upstream_incomplete",
        err.message,
    )
    assert payload["error"] == json.loads(err.body())["error"]  # what OpenAI's SDKs raise on
    ((name, data),) = sse_events(CHAT_RULES.error_event(err))
    assert json.loads(data) == json.loads(err.body())
    overloaded = GatewayError(529, "Overloaded")
    assert b'"overloaded_error"' in ANTHROPIC_RULES.error_event(overloaded)


# --------------------------------------------------------------------- usage, ids, betas


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # Chat completions.
        (
            {
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 4},
                "completion_tokens_details": {"reasoning_tokens": 2},
            },
            Usage(10, 5, 4, 2),
        ),
        # The Responses API: input_tokens counts the cached part.
        (
            {
                "input_tokens": 10,
                "input_tokens_details": {"cached_tokens": 4},
                "output_tokens": 5,
                "output_tokens_details": {"reasoning_tokens": 2},
            },
            Usage(10, 5, 4, 2),
        ),
        # Anthropic: input_tokens leaves out cache writes and reads.
        (
            {
                "input_tokens": 2,
                "cache_creation_input_tokens": 30,
                "cache_read_input_tokens": 300,
                "output_tokens": 5,
            },
            Usage(332, 5, 300, 0),
        ),
        ({"input_tokens": 7, "output_tokens": 3}, Usage(7, 3, 0, 0)),
        ({}, Usage()),
    ],
    ids=["chat", "responses", "anthropic", "plain", "empty"],
)
def test_usage_in_every_shape(usage: dict[str, Any], expected: Usage) -> None:
    chat = msgspec.convert(usage, UsageFields)
    shape = chat if not chat.empty else msgspec.convert(usage, IOUsageFields)
    assert shape.value() == expected
    assert usage_of(msgspec.json.encode({"id": "x", "usage": usage})) == expected


def test_usage_reported_in_parts_is_merged() -> None:
    start = IOUsageFields(input_tokens=2, cache_read_input_tokens=10, output_tokens=1)
    delta = IOUsageFields(output_tokens=42)
    assert start.merged(delta).value() == Usage(12, 42, 10, 0)


def test_response_ids_are_a_bounded_lru_map() -> None:
    ids = ResponseIds(limit=2)
    ids.note("a", Made("up-a", None, "m"))
    ids.note("b", Made("up-b", None, "m"))
    assert ids.get("a") == Made("up-a", None, "m")  # a is now the most recent
    ids.note("c", Made("up-c", None, "m"))
    assert (ids.get("a"), ids.get("b"), len(ids)) == (Made("up-a", None, "m"), None, 2)
    ids.forget("a")
    assert ids.get("a") is None


def test_the_response_id_of_an_answer() -> None:
    assert response_id_of(b'{"id":"resp_1","object":"response"}') == "resp_1"
    first = responses_event("response.created", response={"id": "resp_2"})
    assert response_id_of(first + b"event: other\ndata: {}\n\n") == "resp_2"
    assert response_id_of(b": ping\n\n") is None
    assert response_id_of(b"{not json") is None


def test_caller_betas_are_bounded() -> None:
    headers = [(b"anthropic-beta", b"a-1, b-2"), (b"x-api-key", b"k"), (b"anthropic-beta", b"c")]
    assert caller_betas(headers) == "a-1, b-2,c"
    assert caller_betas([(b"anthropic-beta", b"x" * 2000)]) == ""
    assert caller_betas([(b"anthropic-beta", b"bad\nvalue")]) == ""
    assert caller_betas([]) == ""


# --------------------------------------------------------------------- config


def _config(upstream: dict[str, Any], model: dict[str, Any] | None = None) -> Any:
    from aifetch.gateway import parse_config

    return parse_config(
        {
            "upstreams": {"up": upstream},
            "models": {"m": {"targets": [{"upstream": "up"}], **(model or {})}},
        }
    )


def test_translated_kinds_take_the_providers_base_urls_by_default() -> None:
    from aifetch.gateway._secrets import Secrets
    from aifetch.gateway._upstream import Upstream

    config = _config({"kind": "anthropic", "api_key": "sk-ant-1234567"})
    claude = Upstream("up", config.upstreams["up"], Secrets(()), False)
    assert claude.base == "https://api.anthropic.com"
    assert claude.headers.get("x-api-key") == "sk-ant-1234567"
    assert claude.headers.get("authorization") is None
    assert claude.headers.get("anthropic-version") == "2023-06-01"
    assert 529 in claude.retry_statuses
    config = _config({"kind": "gemini", "api_key": "AIza-1234567"})
    gemini = Upstream("up", config.upstreams["up"], Secrets(()), False)
    assert gemini.base == "https://generativelanguage.googleapis.com/v1beta"
    assert gemini.headers.get("x-goog-api-key") == "AIza-1234567"
    config = _config({"base_url": "http://x.test/v1", "api_key": "sk-openai-1234"})
    plain = Upstream("up", config.upstreams["up"], Secrets(()), False)
    assert plain.headers.get("authorization") == "Bearer sk-openai-1234"
    assert 529 not in plain.retry_statuses


@pytest.mark.parametrize(
    ("upstream", "model", "message"),
    [
        ({"kind": "anthropic", "base_url": "ftp://x"}, {}, "upstreams.up.base_url"),
        ({"kind": "gemini", "base_url": "https://k:secret@x.test"}, {}, "api_key, not in"),
        ({"kind": "anthropic", "anthropic_version": ""}, {}, "anthropic_version"),
        ({"kind": "anthropic"}, {"default_max_tokens": 0}, "models.m.default_max_tokens"),
        ({"kind": "anthropic"}, {"anthropic_beta": ["a,b"]}, "anthropic_beta[0]"),
        ({"kind": "bedrock"}, {}, "upstreams.up.kind"),
    ],
)
def test_the_dialect_config_is_checked(
    upstream: dict[str, Any], model: dict[str, Any], message: str
) -> None:
    from aifetch.gateway import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        _config(upstream, model)
    assert "secret" not in str(info.value)
