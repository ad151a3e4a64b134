"""``/v1/responses`` relayed byte-exact to OpenAI-kind upstreams, with the official
``openai`` package as the caller: stream and whole answers, usage from
``response.completed``, the commit rule, ``previous_response_id`` affinity, the routes of
one response, disconnect cancel, and a clear 400 for the other kinds."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import msgspec
import openai
import pytest

from tests.support.fake_responses import usage_of
from tests.support.fake_upstream import server_error

from ..conftest import RunningGateway
from .conftest import (
    CALLER_KEY,
    OTHER_KEY,
    RESPONSES_KEY,
    AccessLines,
    Fakes,
    Serve,
    dialect_config,
    sse_events,
    tokens,
)

TEXT = "Hello from the fake Responses API"


def client(gateway: RunningGateway, key: str = CALLER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=10)


def post(gateway: RunningGateway, body: dict[str, Any], key: str = CALLER_KEY) -> tuple[int, bytes]:
    headers = {"authorization": f"Bearer {key}"}
    with httpx.stream(
        "POST", gateway.url + "/v1/responses", json=body, headers=headers, timeout=10
    ) as response:
        return response.status_code, b"".join(response.iter_raw())


def test_a_whole_response_is_relayed_byte_exact(
    gateway: RunningGateway, fakes: Fakes, access: AccessLines
) -> None:
    body = {"model": "resp", "input": "Hi", "instructions": "Be brief."}
    before = tokens(gateway, "resp")
    mark = access.settle()
    status, data = post(gateway, body)
    assert status == 200
    (made,) = fakes.api_a.made.values()
    assert data == msgspec.json.encode(made)
    sent = fakes.api_a.received[-1]
    assert sent.path == "/v1/responses"
    assert sent.header("authorization") == f"Bearer {RESPONSES_KEY}"
    assert sent.body == msgspec.json.encode(body)  # no stream_options added, nothing renamed
    usage = usage_of(sent, TEXT)
    line = access.after(mark)[0]
    assert (line["path"], line["upstream"], line["status"]) == ("/v1/responses", "resp-a", 200)
    assert line["prompt_tokens"] == usage["input_tokens"]
    assert line["cached_tokens"] == usage["input_tokens_details"]["cached_tokens"]
    assert line["completion_tokens"] == usage["output_tokens"]
    assert line["reasoning_tokens"] == usage["output_tokens_details"]["reasoning_tokens"]
    after = tokens(gateway, "resp")
    assert after["prompt"] - before.get("prompt", 0) == usage["input_tokens"]
    with client(gateway) as oa:
        assert oa.responses.create(model="resp", input="Hi").output_text == TEXT


def test_a_stream_is_relayed_byte_exact(
    gateway: RunningGateway, fakes: Fakes, access: AccessLines
) -> None:
    mark = access.settle()
    status, data = post(gateway, {"model": "resp", "input": "Hi", "stream": True})
    assert status == 200
    assert data == b"".join(fakes.api_a.sent)
    sent = fakes.api_a.received[-1]
    assert "stream_options" not in sent.json()
    usage = usage_of(sent, TEXT)
    line = access.after(mark)[0]
    assert line["stream"] is True
    assert line["ttft_ms"] is not None
    assert (line["prompt_tokens"], line["completion_tokens"], line["reasoning_tokens"]) == (
        usage["input_tokens"],
        usage["output_tokens"],
        3,
    )
    with client(gateway) as oa:
        events = list(oa.responses.create(model="resp", input="Hi", stream=True))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]  # type: ignore[union-attr]
    assert "".join(deltas) == TEXT
    assert events[-1].type == "response.completed"


def test_an_error_before_the_first_output_falls_back(
    gateway: RunningGateway, fakes: Fakes, access: AccessLines
) -> None:
    fakes.api_a.fault = "error-before"
    mark = access.settle()
    status, data = post(gateway, {"model": "resp", "input": "Hi", "stream": True})
    assert status == 200
    assert data == b"".join(fakes.api_b.sent)  # only the fallback's stream
    assert fakes.api_a.sent  # the first target did start one
    assert access.after(mark)[0]["fallbacks"] == 1


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("error-after", "upstream_error_event"),
        ("failed-after", "upstream_error_event"),
        ("cut", "upstream_incomplete"),
    ],
)
def test_a_failure_after_the_first_output_is_an_error_event(
    gateway: RunningGateway, fakes: Fakes, fault: str, code: str
) -> None:
    fakes.api_a.fault = fault
    status, data = post(gateway, {"model": "resp", "input": "Hi", "stream": True})
    assert status == 200
    names = [name for name, _ in sse_events(data)]
    assert "response.output_text.delta" in names  # part of the answer reached the caller
    assert "response.completed" not in names
    assert "response.failed" not in names
    assert names[-1] == "error"
    error = json.loads(sse_events(data)[-1][1])
    assert (error["type"], error["code"]) == ("error", code)
    assert error["error"]["code"] == code
    assert error["message"] == error["error"]["message"]
    fakes.api_a.fault = fault
    with client(gateway) as oa, pytest.raises(openai.APIError) as info:
        list(oa.responses.create(model="resp", input="Hi", stream=True))
    assert info.value.message == error["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_previous_response_id_goes_to_the_upstream_that_made_it(
    gateway: RunningGateway, fakes: Fakes, stream: bool
) -> None:
    fakes.resp_a.enqueue(server_error(500))  # the first call falls back to upstream b
    with client(gateway) as oa:
        first = oa.responses.create(model="resp", input="Hi")
        assert first.id.startswith("resp_b_")
        follow = oa.responses.create(
            model="resp", input="And then?", previous_response_id=first.id, stream=stream
        )
        if stream:
            events = list(follow)  # type: ignore[arg-type]
            text = events[-1].response.output_text  # type: ignore[union-attr]
        else:
            text = follow.output_text  # type: ignore[union-attr]
    assert text == f"{TEXT} (after {first.id})"
    assert len(fakes.resp_a.requests) == 1  # only the failed first call went to a
    assert fakes.api_b.received[-1].json()["previous_response_id"] == first.id


def test_a_response_is_reached_by_its_id(gateway: RunningGateway, fakes: Fakes) -> None:
    with client(gateway) as oa:
        made = oa.responses.create(model="resp", input="Hi")
        assert oa.responses.retrieve(made.id).output_text == TEXT
        assert oa.responses.input_items.list(made.id).data == []
        assert oa.responses.cancel(made.id).status == "cancelled"
        oa.responses.delete(made.id)
        with pytest.raises(openai.NotFoundError) as gone:
            oa.responses.retrieve(made.id)
    assert gone.value.code == "response_not_found"
    paths = [(r.method, r.path) for r in fakes.resp_a.requests]
    assert paths == [
        ("POST", "/v1/responses"),
        ("GET", f"/v1/responses/{made.id}"),
        ("GET", f"/v1/responses/{made.id}/input_items"),
        ("POST", f"/v1/responses/{made.id}/cancel"),
        ("DELETE", f"/v1/responses/{made.id}"),
    ]


def test_ids_the_gateway_did_not_make_for_the_caller_are_not_found(
    gateway: RunningGateway, fakes: Fakes
) -> None:
    with client(gateway) as oa:
        made = oa.responses.create(model="resp", input="Hi")
        with pytest.raises(openai.NotFoundError) as unknown:
            oa.responses.retrieve("resp_never_made")
    assert unknown.value.code == "response_not_found"
    with client(gateway, OTHER_KEY) as other:
        with pytest.raises(openai.NotFoundError) as theirs:
            other.responses.retrieve(made.id)
        with pytest.raises(openai.BadRequestError) as continued:
            other.responses.create(model="resp", input="Hi", previous_response_id=made.id)
    assert theirs.value.code == "response_not_found"
    assert continued.value.code == "previous_response_not_found"
    assert continued.value.param == "previous_response_id"
    assert len(fakes.resp_a.requests) == 1  # none of them reached an upstream


@pytest.mark.parametrize("previous", ["resp_made_elsewhere", "resp with/odd chars" * 20])
def test_with_several_callers_an_unknown_previous_response_is_not_found(
    gateway: RunningGateway, fakes: Fakes, previous: str
) -> None:
    # Past the gateway every caller is its one upstream key: were an id the gateway does
    # not know passed on, the upstream would continue whoever's response it is.
    with client(gateway) as oa, pytest.raises(openai.BadRequestError) as unknown:
        oa.responses.create(model="resp", input="Hi", previous_response_id=previous)
    assert unknown.value.code == "previous_response_not_found"
    assert previous not in unknown.value.message or len(previous) <= 40
    assert fakes.resp_a.requests == []
    assert fakes.resp_b.requests == []


def test_with_one_caller_an_unknown_previous_response_goes_to_the_targets(
    fakes: Fakes, serve: Serve
) -> None:
    one_caller = dialect_config(fakes, callers=[{"name": "app", "key": CALLER_KEY}])
    with client(serve(one_caller)) as oa, pytest.raises(openai.BadRequestError) as unknown:
        oa.responses.create(model="resp", input="Hi", previous_response_id="resp_made_elsewhere")
    assert unknown.value.code == "previous_response_not_found"  # the upstream's own answer
    assert fakes.api_a.received[-1].json()["previous_response_id"] == "resp_made_elsewhere"


@pytest.mark.parametrize("model", ["claude", "gem", "mock-gpt"])
def test_other_kinds_get_a_clear_400(gateway: RunningGateway, fakes: Fakes, model: str) -> None:
    with client(gateway) as oa, pytest.raises(openai.BadRequestError) as info:
        oa.responses.create(model=model, input="Hi")
    assert info.value.code == "route_not_supported"
    assert "relayed to openai-kind upstreams only" in info.value.message
    assert fakes.anthropic.requests == fakes.gemini.requests == []


def test_a_refusal_moves_the_call_to_an_openai_target(
    gateway: RunningGateway, fakes: Fakes
) -> None:
    with client(gateway) as oa:
        assert oa.responses.create(model="claude-then-resp", input="Hi").output_text == TEXT
    assert fakes.anthropic.requests == []


def test_a_caller_leaving_cancels_the_upstream_stream(
    gateway: RunningGateway, fakes: Fakes
) -> None:
    fakes.api_a.delay = 0.05
    try:
        body = msgspec.json.encode({"model": "resp", "input": "Hi", "stream": True})
        sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
        head = (
            "POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {CALLER_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        received = b""
        while b"response.output_item.added" not in received:
            received += sock.recv(65536)
        upstream_request = fakes.resp_a.wait_for_requests(1)[0]
        sock.close()
        closed_by = time.monotonic()
        seen = fakes.resp_a.wait_for_close(upstream_request.connection_id, timeout=2.0)
        assert seen is not None, "the upstream connection was not closed"
        assert seen - closed_by < 1.0
        assert not any(b"response.completed" in e for e in fakes.api_a.sent)
    finally:
        fakes.api_a.delay = 0.0
