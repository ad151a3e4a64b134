"""The ``anthropic`` and ``gemini`` upstream kinds, with the official ``openai`` package as
the caller: requests translated as each provider wants them (its key in its header, never
in a URL), answers translated back (stream, whole, tools, usage), and the faults each
provider shows (529, an error event before and after the commit point, a cut) handled by
the gateway's rules: no false completion."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.support import fake_anthropic, fake_gemini
from tests.support.fake_anthropic import transcript

from ..conftest import RunningGateway
from .conftest import (
    ANTHROPIC_KEY,
    CALLER_KEY,
    CONFIG_BETA,
    GEMINI_KEY,
    AccessLines,
    Fakes,
    Serve,
    dialect_config,
    sse_events,
    tokens,
)

HI = [{"role": "user", "content": "Hi there"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TEXT = {"claude": "Hello from the fake Claude", "gem": "Hello from the fake Gemini"}


def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=CALLER_KEY, max_retries=0, timeout=10
    )


def post(gateway: RunningGateway, body: dict[str, Any], path: str = "/v1/chat/completions"
         ) -> tuple[int, bytes]:  # fmt: skip
    headers = {"authorization": f"Bearer {CALLER_KEY}"}
    with httpx.stream("POST", gateway.url + path, json=body, headers=headers, timeout=10) as r:
        return r.status_code, b"".join(r.iter_raw())


@pytest.mark.parametrize("model", ["claude", "gem"])
def test_create_stream_and_tools(gateway: RunningGateway, model: str, access: AccessLines) -> None:
    mark = access.settle()
    with client(gateway) as oa:
        whole = oa.chat.completions.create(model=model, messages=HI)  # type: ignore[arg-type]
        chunks = list(
            oa.chat.completions.create(
                model=model,
                messages=HI,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        called = oa.chat.completions.create(
            model=model,
            messages=HI,
            tools=[WEATHER],  # type: ignore[arg-type,list-item]
        )
    assert whole.choices[0].message.content == TEXT[model]
    assert whole.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == TEXT[model]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    call = called.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {}  # type: ignore[union-attr]
    assert called.choices[0].finish_reason == "tool_calls"
    lines = access.after(mark, 3)
    assert [line["upstream"] for line in lines] == [{"claude": "claude", "gem": "gem"}[model]] * 3
    assert whole.usage is not None
    assert lines[0]["prompt_tokens"] == whole.usage.prompt_tokens > 0
    assert lines[0]["completion_tokens"] == whole.usage.completion_tokens > 0
    assert lines[1]["completion_tokens"] == chunks[-1].usage.completion_tokens  # type: ignore[union-attr]


def test_a_stream_without_usage_asked_gets_no_usage_chunk(gateway: RunningGateway) -> None:
    with client(gateway) as oa:
        chunks = list(oa.chat.completions.create(model="claude", messages=HI, stream=True))  # type: ignore[arg-type]
    assert all(chunk.choices for chunk in chunks)  # the usage chunk was stripped
    assert all(chunk.usage is None for chunk in chunks)


def test_the_anthropic_request_as_sent(
    gateway: RunningGateway, fakes: Fakes, access: AccessLines
) -> None:
    with client(gateway) as oa:
        oa.chat.completions.create(
            model="claude",
            messages=[{"role": "system", "content": "Be brief."}, *HI],  # type: ignore[list-item]
            stop=["END"],
        )
    sent = fakes.claude.received[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.header("x-api-key") == ANTHROPIC_KEY
    assert sent.header("authorization") is None
    assert sent.header("anthropic-version") == "2023-06-01"
    assert sent.header("anthropic-beta") == CONFIG_BETA
    assert CALLER_KEY not in repr(sent.headers) + sent.body.decode()
    payload = sent.json()
    assert payload["model"] == "claude-fake-1"
    assert payload["system"] == [{"type": "text", "text": "Be brief."}]
    assert payload["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi there"}]}
    ]
    assert payload["stop_sequences"] == ["END"]
    assert payload["max_tokens"] == 4096  # none given, none configured: the default


def test_the_configured_default_max_tokens_and_version(fakes: Fakes, serve: Serve) -> None:
    raw = {
        "upstreams": {
            "claude": {"kind": "anthropic", "base_url": fakes.anthropic.url,
                       "api_key": ANTHROPIC_KEY, "anthropic_version": "2024-10-22"},
        },
        "models": {
            "long": {"targets": [{"upstream": "claude", "model": "claude-long"}],
                     "default_max_tokens": 777},
            "short": {"targets": [{"upstream": "claude", "model": "claude-long"}]},
        },
        "callers": [{"name": "app", "key": CALLER_KEY}],
        "server": {"heartbeat": 0},
    }  # fmt: skip
    gateway = serve(dialect_config(fakes, **raw))
    with client(gateway) as oa:
        oa.chat.completions.create(model="long", messages=HI)  # type: ignore[arg-type]
        oa.chat.completions.create(model="short", messages=HI)  # type: ignore[arg-type]
        oa.chat.completions.create(model="long", messages=HI, max_tokens=50)  # type: ignore[arg-type]
    first, second, third = fakes.claude.received[-3:]
    assert first.json()["max_tokens"] == 777
    assert second.json()["max_tokens"] == 4096
    assert third.json()["max_tokens"] == 50
    assert first.header("anthropic-version") == "2024-10-22"
    assert first.header("anthropic-beta") is None


def test_the_gemini_request_as_sent(gateway: RunningGateway, fakes: Fakes) -> None:
    with client(gateway) as oa:
        oa.chat.completions.create(model="gem", messages=HI)  # type: ignore[arg-type]
        list(oa.chat.completions.create(model="gem", messages=HI, stream=True))  # type: ignore[arg-type]
    whole, streamed = fakes.gem.received[-2:]
    assert whole.path == "/v1beta/models/gemini-fake:generateContent"
    assert streamed.path == "/v1beta/models/gemini-fake:streamGenerateContent"
    assert streamed.query == "alt=sse"
    for sent in (whole, streamed):
        assert sent.header("x-goog-api-key") == GEMINI_KEY
        assert "key=" not in sent.query  # never in a URL, where logs keep it
        assert sent.header("authorization") is None
        assert sent.json()["contents"] == [{"role": "user", "parts": [{"text": "Hi there"}]}]


def test_what_a_dialect_cannot_translate_is_refused_before_sending(
    gateway: RunningGateway, fakes: Fakes, access: AccessLines
) -> None:
    mark = access.settle()
    with client(gateway) as oa, pytest.raises(openai.BadRequestError) as info:
        oa.chat.completions.create(model="claude", messages=HI, n=2)  # type: ignore[arg-type]
    assert info.value.code == "unsupported_parameter"
    assert info.value.param == "n"
    assert "anthropic" in info.value.message
    assert fakes.anthropic.requests == []
    assert access.after(mark)[0]["error"] == "unsupported_parameter"
    # With another target, the refusal only moves the call on.
    with client(gateway) as oa:
        answer = oa.chat.completions.create(model="claude-then-gpt", messages=HI, n=2)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Hello from the tool chat"
    assert fakes.anthropic.requests == []


def test_routes_a_kind_does_not_serve_are_a_clear_400(gateway: RunningGateway) -> None:
    with client(gateway) as oa:
        with pytest.raises(openai.BadRequestError) as embeddings:
            oa.embeddings.create(model="claude", input="x")
        with pytest.raises(openai.BadRequestError) as completions:
            oa.completions.create(model="gem", prompt="x")
    assert embeddings.value.code == completions.value.code == "route_not_supported"
    assert "kind anthropic" in embeddings.value.message


# --------------------------------------------------------------------- faults


def test_529_is_retried(gateway: RunningGateway, fakes: Fakes, access: AccessLines) -> None:
    fakes.anthropic.enqueue(fake_anthropic.overloaded())
    mark = access.settle()
    with client(gateway) as oa:
        answer = oa.chat.completions.create(model="claude", messages=HI)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == TEXT["claude"]
    assert access.after(mark)[0]["retries"] == 1


def test_529_on_every_try_is_passed_on_in_openai_shape(
    gateway: RunningGateway, fakes: Fakes
) -> None:
    fakes.anthropic.enqueue(fake_anthropic.overloaded(), times=2)
    with client(gateway) as oa, pytest.raises(openai.InternalServerError) as info:
        oa.chat.completions.create(model="claude", messages=HI)  # type: ignore[arg-type]
    assert info.value.status_code == 529
    assert info.value.body == {
        "message": "Overloaded",
        "type": "overloaded_error",
        "param": None,
        "code": "overloaded",
    }


def test_a_rejected_gateway_key_is_not_the_callers_fault(
    gateway: RunningGateway, fakes: Fakes
) -> None:
    fakes.anthropic.enqueue(fake_anthropic.Status(401, "authentication_error", "invalid x-api-key"))
    fakes.gemini.enqueue(
        fake_gemini.Status(400, "INVALID_ARGUMENT", "API key not valid. API_KEY_INVALID")
    )
    with client(gateway) as oa:
        for model in ("claude", "gem"):
            with pytest.raises(openai.APIStatusError) as info:
                oa.chat.completions.create(model=model, messages=HI)  # type: ignore[arg-type]
            assert info.value.status_code == 502
            assert info.value.code == "upstream_auth_failed"


def _no_false_completion(data: bytes) -> dict[str, Any]:
    events = sse_events(data)
    assert all(payload != "[DONE]" for _, payload in events)
    assert events[-1][0] == "error"
    return dict(json.loads(events[-1][1])["error"])


@pytest.mark.parametrize(
    ("model", "fault", "code"),
    [
        ("claude", fake_anthropic.error_event_mid_stream, "upstream_error_event"),
        ("claude", lambda: fake_anthropic.cut_mid_stream(events=6), "upstream_incomplete"),
        ("claude", lambda: fake_anthropic.cut_mid_stream(events=6, reset=True), "upstream_reset"),
        ("gem", fake_gemini.error_mid_stream, "upstream_error_event"),
        ("gem", lambda: fake_gemini.cut_mid_stream(events=1), "upstream_incomplete"),
    ],
    ids=["claude-error-event", "claude-cut", "claude-reset", "gem-error", "gem-cut"],
)
def test_a_failure_after_the_commit_point_ends_with_an_error_event(
    gateway: RunningGateway, fakes: Fakes, model: str, fault: Any, code: str
) -> None:
    upstream = fakes.anthropic if model == "claude" else fakes.gemini
    upstream.enqueue(fault())
    status, data = post(gateway, {"model": model, "messages": HI, "stream": True})
    assert status == 200
    assert b'"content":"' in data  # the content before the fault reached the caller
    assert _no_false_completion(data)["code"] == code
    # The SDK raises instead of returning a truncated answer.
    upstream.enqueue(fault())
    with client(gateway) as oa, pytest.raises(openai.APIError):
        list(oa.chat.completions.create(model=model, messages=HI, stream=True))  # type: ignore[arg-type]


def test_an_error_event_before_the_commit_point_is_retried(
    gateway: RunningGateway, fakes: Fakes
) -> None:
    start = {"type": "message_start", "message": {"id": "msg_x", "type": "message",
             "role": "assistant", "model": "claude-fake-1", "content": [],
             "usage": {"input_tokens": 3, "output_tokens": 1}}}  # fmt: skip
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    early = fake_anthropic.sse("message_start", start) + fake_anthropic.sse("error", error)
    fakes.anthropic.enqueue(fake_anthropic.Transcript(early))
    with client(gateway) as oa:
        chunks = list(oa.chat.completions.create(model="claude", messages=HI, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == TEXT["claude"]
    assert len(fakes.anthropic.requests) == 2


def test_usage_of_a_translated_stream_counts_the_cache(
    gateway: RunningGateway, fakes: Fakes, access: AccessLines
) -> None:
    fakes.anthropic.enqueue(transcript("anthropic_cache_usage.sse"))
    before = tokens(gateway, "claude")
    mark = access.settle()
    with client(gateway) as oa:
        chunks = list(
            oa.chat.completions.create(
                model="claude",
                messages=HI,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    line = access.after(mark)[0]
    assert line["prompt_tokens"] == usage.prompt_tokens > 3068  # cache writes included
    assert line["cached_tokens"] == usage.prompt_tokens_details.cached_tokens
    assert line["completion_tokens"] == usage.completion_tokens
    after = tokens(gateway, "claude")
    assert after["prompt"] - before.get("prompt", 0) == usage.prompt_tokens
    assert after["completion"] - before.get("completion", 0) == usage.completion_tokens
