"""A relayed stream is complete only when it really is, and what the caller gets is well
formed: ``[DONE]`` counts only as an event's whole data, an unterminated last block never
fuses with the error event, the ``"usage": null`` members the gateway caused are gone
however the upstream spelt them, and upstream errors and request ids reach the caller in
a shape its SDK reads. Each class is tried in its general form (every position, every
length, every spelling)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import msgspec
import openai
import pytest

from aifetch.sse import ServerSentEvent, SSEDecoder
from tests.gateway.conftest import RunningGateway
from tests.support import openai_wire as wire
from tests.support.fake_upstream import Exchange, FakeUpstream, respond

from ._inputs_support import fake_upstream, gateway_config, running_gateway

CHAT = "/v1/chat/completions"


@dataclass(frozen=True, slots=True)
class _Cut:
    """A 200 stream of these bytes, sent in two reads split at ``at``, then closed."""

    data: bytes
    at: int = 0

    async def run(self, ex: Exchange) -> None:
        await ex.start_stream()
        if self.at:
            await ex.send_chunks(self.data[: self.at])
            await ex.sleep(0.005)
        await ex.send_chunks(self.data[self.at :])
        await ex.end_stream()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with fake_upstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream) -> Iterator[RunningGateway]:
    with running_gateway(gateway_config(fake.url, "sk-upstream-integrity-0000")) as running:
        yield running


@pytest.fixture
def sdk(gateway: RunningGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0) as client:
        yield client


def _events(gateway: RunningGateway, **body: object) -> tuple[int, bytes, list[ServerSentEvent]]:
    request = {"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream("POST", gateway.url + CHAT, json={**request, **body}, timeout=10) as resp:
        data = b"".join(resp.iter_raw())
    decoder = SSEDecoder()
    return resp.status_code, data, decoder.feed(data) + decoder.close()


def _chunk(content: str) -> bytes:
    return wire.sse_event(wire.chat_chunk({"content": content}))


ROLE = wire.sse_event(wire.chat_chunk({"role": "assistant", "content": ""}))
STOP = wire.sse_event(wire.chat_chunk({}, finish_reason="stop"))


def _assert_cut_reported(events: list[ServerSentEvent], code: str) -> None:
    assert events, "no events at all"
    last = events[-1]
    assert last.event == "error", last
    assert msgspec.json.decode(last.data)["error"]["code"] == code
    assert all(e.data != "[DONE]" for e in events)


TEXT = "say it now"


@pytest.mark.parametrize("position", range(len(TEXT) + 1))
def test_done_inside_content_never_completes_a_stream(
    fake: FakeUpstream, gateway: RunningGateway, position: int
) -> None:
    # The model writes "[DONE]" (and "data: [DONE]") inside its answer; the upstream then
    # ends without the real final event.
    for marker in ("[DONE]", "data: [DONE]"):
        content = TEXT[:position] + marker + TEXT[position:]
        # The block that holds it ends a read: the end of a read is where the old check looked.
        fake.enqueue(_Cut(ROLE + _chunk(content) + STOP, at=len(ROLE + _chunk(content))))
        status, _, events = _events(gateway)
        assert status == 200
        assert msgspec.json.decode(events[1].data)["choices"][0]["delta"]["content"] == content
        _assert_cut_reported(events, "upstream_incomplete")


LAST = _chunk("the last words")


@pytest.mark.parametrize("length", range(1, len(LAST) - 1))
def test_an_unterminated_last_block_never_fuses_with_the_error_event(
    fake: FakeUpstream, gateway: RunningGateway, length: int
) -> None:
    fake.enqueue(_Cut(ROLE + _chunk("first") + LAST[:length]))
    status, data, events = _events(gateway)
    assert status == 200
    assert [e.event for e in events] == ["message", "message", "error"]
    relayed = ROLE + _chunk("first")
    assert data.startswith(relayed)
    # The half block is not relayed: the error event comes right after the last whole one.
    assert data[len(relayed) :].startswith(b"event: error\n")
    _assert_cut_reported(events, "upstream_incomplete")


def test_the_official_sdk_raises_the_api_error_on_a_cut(
    fake: FakeUpstream, sdk: openai.OpenAI
) -> None:
    fake.enqueue(_Cut(ROLE + _chunk("first") + LAST[:10]))
    stream = sdk.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError) as info:
        list(stream)
    assert "ended the stream before [DONE]" in str(info.value)
    assert not isinstance(info.value, openai.APIResponseValidationError)


NULL_USAGE_SPELLINGS = [
    b'"usage":null',
    b'"usage": null',
    b'"usage" : null',
    b'"usage":\tnull',
    b'"usage"\n:\n null',
]


@pytest.mark.parametrize("spelling", NULL_USAGE_SPELLINGS, ids=repr)
@pytest.mark.parametrize("where", ["first", "middle", "last", "alone"])
def test_null_usage_is_stripped_however_it_is_spelt(
    fake: FakeUpstream, gateway: RunningGateway, spelling: bytes, where: str
) -> None:
    def chunk(delta: bytes, finish: bytes = b"null") -> bytes:
        members = [b'"id":"c"', b'"choices":[{"index":0,"delta":' + delta + b',"finish_reason":'
                   + finish + b"}]"]  # fmt: skip
        if where == "first":
            members.insert(0, spelling)
        elif where == "middle":
            members.insert(1, spelling)
        elif where == "last":
            members.append(spelling)
        else:
            return b"data: {" + spelling + b"}\n\n"
        return b"data: {" + b", ".join(members) + b"}\n\n"

    usage = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
    body = (
        chunk(b'{"role":"assistant","content":""}')
        + chunk(b'{"content":"hi"}')
        + chunk(b"{}", b'"stop"')
        + usage
        + wire.SSE_DONE
    )
    fake.enqueue(_Cut(body))
    status, data, events = _events(gateway)
    assert status == 200
    assert b"usage" not in data  # neither the null members nor the usage chunk
    assert events[-1].data == "[DONE]"
    for event in events[:-1]:
        msgspec.json.decode(event.data)  # every stripped chunk is still valid JSON


@pytest.mark.parametrize(
    ("status", "body", "ctype", "message"),
    [
        (404, b"404: Not Found", "text/plain", "404: Not Found"),
        (
            502,
            b"<html><body><h1>502 Bad Gateway</h1></body></html>",
            "text/html",
            "502 Bad Gateway",
        ),
        (400, b'{"detail": "model is required"}', "application/json", "model is required"),
        (
            422,
            b'{"message": "bad temperature", "code": "E42"}',
            "application/json",
            "bad temperature",
        ),
        (500, b"", "text/plain", "answered 500"),
    ],
)
def test_upstream_errors_in_other_shapes_reach_the_sdk_as_openai_errors(
    fake: FakeUpstream,
    sdk: openai.OpenAI,
    status: int,
    body: bytes,
    ctype: str,
    message: str,
) -> None:
    for stream in (False, True):
        fake.enqueue(respond(status, body, {"content-type": ctype}))
        with pytest.raises(openai.APIStatusError) as info:
            sdk.chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": "x"}], stream=stream
            )
        assert info.value.status_code == status
        assert isinstance(info.value.body, dict)
        assert message in info.value.message


def test_the_upstream_request_id_reaches_the_caller(fake: FakeUpstream, sdk: openai.OpenAI) -> None:
    for stream in (False, True):
        fake.enqueue(
            respond(
                200,
                wire.dumps(wire.chat_completion_body("hi")),
                {"content-type": "application/json", "x-request-id": "req_plain"},
            )
            if not stream
            else _WithHeaders(ROLE + _chunk("hi") + STOP + wire.SSE_DONE, "req_stream")
        )
        raw = sdk.chat.completions.with_raw_response.create(
            model="gpt", messages=[{"role": "user", "content": "x"}], stream=stream
        )
        assert raw.headers["x-request-id"] == ("req_stream" if stream else "req_plain")
        raw.parse()


@dataclass(frozen=True, slots=True)
class _WithHeaders:
    data: bytes
    request_id: str

    async def run(self, ex: Exchange) -> None:
        await ex.start_stream(200, headers={"x-request-id": self.request_id})
        await ex.send_chunks(self.data)
        await ex.end_stream()
