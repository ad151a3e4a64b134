"""The fault matrix for the dialects: the anthropic and gemini upstream kinds, the
``/v1/messages`` route (translated, and relayed byte-exact to an anthropic upstream) and the
``/v1/responses`` route, each under the faults its providers show.

Every cell asserts what the caller sees in its own wire format (an error body of its
dialect's shape before the commit point; after it, the stream's own error event and never
its completing event: no ``[DONE]``, no ``message_stop``, no ``response.completed``), the
access line, that no key reached the caller or a URL, and the leak census of
``_faults_support`` (tasks, calls in flight, upstream connections, sockets, file
descriptors). One fake upstream stands behind every kind, so the census counts one pool of
sockets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from aifetch.gateway import GatewayConfig, parse_config
from tests.support import fake_anthropic, fake_gemini
from tests.support.fake_responses import ResponsesAPI
from tests.support.fake_upstream import (
    Behaviour,
    Exchange,
    FakeUpstream,
    RecordedRequest,
    chat_stream,
    endless_stream,
    error_event,
    reset_mid_stream,
    server_error,
    stall,
    status_storm,
)

from ._faults_support import (
    FIRST_BYTE,
    HANG,
    IDLE,
    UPSTREAM_SECRET,
    Answer,
    Cell,
    InspectableGateway,
    LogCapture,
    RawCaller,
    captured_logs,
    request_head,
)

MESSAGES, RESPONSES, CHAT = "/v1/messages", "/v1/responses", "/v1/chat/completions"


def dialect_matrix_config(url: str) -> GatewayConfig:
    """One upstream of each kind, all on the fake; one attempt per model, but
    ``claude-retry`` (two); ``*-patient`` models with timeouts too long to matter."""

    def upstream(kind: str, base: str, wait: float = 0.0) -> dict[str, Any]:
        first_byte, idle = (wait, wait) if wait else (FIRST_BYTE, IDLE)
        timeout = {"connect": 2, "first_byte": first_byte, "idle": idle}
        config = {"kind": kind, "base_url": base, "api_key": UPSTREAM_SECRET, "timeout": timeout}
        return config

    one = {"attempts": 1}
    return parse_config(
        {
            "upstreams": {
                "oa": upstream("openai", url + "/v1"),
                "claude": upstream("anthropic", url),
                "gem": upstream("gemini", url + "/v1beta"),
                "oa-patient": upstream("openai", url + "/v1", 60.0),
                "claude-patient": upstream("anthropic", url, 60.0),
            },
            "models": {
                "gpt": {"targets": [{"upstream": "oa"}], "retry": one},
                "claude": {"targets": [{"upstream": "claude"}], "retry": one},
                "claude-retry": {
                    "targets": [{"upstream": "claude"}],
                    "retry": {"attempts": 2, "backoff": 0.01, "cap": 0.05},
                },
                "gem": {"targets": [{"upstream": "gem"}], "retry": one},
                "gpt-patient": {"targets": [{"upstream": "oa-patient"}], "retry": one},
                "claude-patient": {"targets": [{"upstream": "claude-patient"}], "retry": one},
            },
            "server": {"heartbeat": 0, "shutdown_grace": 1},
        }
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def logs() -> Iterator[LogCapture]:
    with captured_logs() as capture:
        yield capture


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, logs: LogCapture) -> Iterator[InspectableGateway]:
    running = InspectableGateway(dialect_matrix_config(fake.url))
    running.start()
    try:
        # Warm up (pools, lazy imports) so the first cell's census starts from steady state.
        fake.enqueue(fake_anthropic.transcript("anthropic_text.sse"))
        assert call(running.port, CHAT, body("claude", CHAT, stream=True)).status == 200
        logs.wait_access(1)
        yield running
    finally:
        running.stop()


class DialectCell(Cell):
    """A matrix cell that also finds no upstream key in any URL the gateway called."""

    def finish(self) -> None:
        super().finish()
        for request in self.fake.requests:
            assert UPSTREAM_SECRET not in request.path + request.query


@pytest.fixture
def cell(gateway: InspectableGateway, fake: FakeUpstream, logs: LogCapture) -> Iterator[Cell]:
    logs.other.clear()
    current = DialectCell(gateway, fake, logs)
    yield current
    current.finish()


def body(model: str, path: str, *, stream: bool) -> dict[str, Any]:
    if path == RESPONSES:
        return {"model": model, "input": "hi", "stream": stream}
    payload: dict[str, Any] = {"model": model, "stream": stream}
    payload["messages"] = [{"role": "user", "content": "hi"}]
    if path == MESSAGES:
        payload["max_tokens"] = 64
    elif stream:
        payload["stream_options"] = {"include_usage": True}
    return payload


def call(port: int, path: str, payload: dict[str, Any]) -> Answer:
    data = msgspec.json.encode(payload)
    with RawCaller(port) as caller:
        caller.send(request_head(len(data), path=path) + data)
        return caller.answer()


# --------------------------------------------------------------------------- behaviours


@dataclass(frozen=True)
class _StallAfter:
    """Sends the first ``events`` blocks of ``data``, then nothing until the peer leaves."""

    data: bytes
    events: int

    async def run(self, ex: Exchange) -> None:
        await ex.start_stream(200)
        await ex.send_chunks(*fake_anthropic.blocks(self.data)[: self.events])
        await ex.wait_peer_gone()


def _early_anthropic_error() -> fake_anthropic.Transcript:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_x",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [],
            "usage": {"input_tokens": 3, "output_tokens": 1},
        },
    }
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    data = fake_anthropic.sse("message_start", start) + fake_anthropic.sse("error", error)
    return fake_anthropic.Transcript(data)


TOOL_PIECES = fake_anthropic.load("anthropic_tool_use_pieces.sse")
FIVE = chat_stream(content="one two three four five", n_chunks=5)


# --------------------------------------------------------------------------- the cells


@dataclass(frozen=True)
class Fault:
    """One cell: the caller's route and model, the upstream's answers in turn (each ``n``
    times), the caller's status, and the gateway's error code (``None`` for an answer that
    came whole, or an upstream's error passed on as it was)."""

    id: str
    path: str
    model: str
    stream: bool
    script: tuple[tuple[Behaviour, int], ...]
    status: int
    code: str | None
    passed_on: bool = False  # an upstream's error status, passed on
    requests: int = 1


def once(
    id: str, path: str, model: str, stream: bool, upstream: Behaviour, status: int, code: str | None
) -> Fault:
    return Fault(id, path, model, stream, ((upstream, 1),), status, code)


ERROR_EVENT, INCOMPLETE = "upstream_error_event", "upstream_incomplete"
RESET, TIMEOUT = "upstream_reset", "upstream_timeout"
OVERLOADED = fake_anthropic.overloaded()

FAULTS = [
    # -- an OpenAI caller, an anthropic upstream (translated)
    Fault(
        "529-storm/plain",
        CHAT,
        "claude-retry",
        False,
        ((OVERLOADED, 2),),
        529,
        None,
        passed_on=True,
        requests=2,
    ),
    Fault(
        "529-then-answer/stream",
        CHAT,
        "claude-retry",
        True,
        ((OVERLOADED, 1), (fake_anthropic.transcript("anthropic_text.sse"), 1)),
        200,
        None,
        requests=2,
    ),
    once(
        "claude-error-before-content/stream",
        CHAT,
        "claude",
        True,
        _early_anthropic_error(),
        502,
        ERROR_EVENT,
    ),
    once(
        "claude-slow-first-event/stream",
        CHAT,
        "claude",
        True,
        fake_anthropic.slow_first_event(HANG),
        504,
        TIMEOUT,
    ),
    once(
        "claude-error-event-mid-stream/stream",
        CHAT,
        "claude",
        True,
        fake_anthropic.error_event_mid_stream(),
        200,
        ERROR_EVENT,
    ),
    once(
        "claude-cut/stream", CHAT, "claude", True, fake_anthropic.cut_mid_stream(6), 200, INCOMPLETE
    ),
    once(
        "claude-reset/stream",
        CHAT,
        "claude",
        True,
        fake_anthropic.cut_mid_stream(6, reset=True),
        200,
        RESET,
    ),
    once("claude-stall/stream", CHAT, "claude", True, _StallAfter(TOOL_PIECES, 6), 200, TIMEOUT),
    once(
        "claude-reset/plain",
        CHAT,
        "claude",
        False,
        fake_anthropic.cut_mid_stream(6, reset=True),
        502,
        RESET,
    ),
    # -- an OpenAI caller, a gemini upstream (translated)
    once("gemini-503/plain", CHAT, "gem", False, fake_gemini.unavailable(), 503, None),
    once(
        "gemini-error-mid-stream/stream",
        CHAT,
        "gem",
        True,
        fake_gemini.error_mid_stream(),
        200,
        ERROR_EVENT,
    ),
    once("gemini-cut/stream", CHAT, "gem", True, fake_gemini.cut_mid_stream(1), 200, INCOMPLETE),
    once(
        "gemini-reset/stream",
        CHAT,
        "gem",
        True,
        fake_gemini.cut_mid_stream(1, reset=True),
        200,
        RESET,
    ),
    # -- an Anthropic caller, an openai upstream (translated both ways)
    once("messages-openai-503/plain", MESSAGES, "gpt", False, server_error(503), 503, None),
    once(
        "messages-openai-error-before-content/stream",
        MESSAGES,
        "gpt",
        True,
        error_event(before_content=True),
        502,
        ERROR_EVENT,
    ),
    once(
        "messages-openai-reset/stream", MESSAGES, "gpt", True, reset_mid_stream(3, FIVE), 200, RESET
    ),
    once("messages-openai-stall/stream", MESSAGES, "gpt", True, stall(3, FIVE), 200, TIMEOUT),
    once("messages-openai-answer/stream", MESSAGES, "gpt", True, FIVE, 200, None),
    # -- an Anthropic caller, an anthropic upstream (byte-exact)
    Fault(
        "messages-native-529-storm/stream",
        MESSAGES,
        "claude-retry",
        True,
        ((OVERLOADED, 2),),
        529,
        None,
        passed_on=True,
        requests=2,
    ),
    once(
        "messages-native-error-event/stream",
        MESSAGES,
        "claude",
        True,
        fake_anthropic.error_event_mid_stream(),
        200,
        ERROR_EVENT,
    ),
    once(
        "messages-native-cut/stream",
        MESSAGES,
        "claude",
        True,
        fake_anthropic.cut_mid_stream(6),
        200,
        INCOMPLETE,
    ),
    once(
        "messages-native-reset/stream",
        MESSAGES,
        "claude",
        True,
        fake_anthropic.cut_mid_stream(6, reset=True),
        200,
        RESET,
    ),
    once(
        "messages-native-answer/stream",
        MESSAGES,
        "claude",
        True,
        fake_anthropic.transcript("anthropic_tool_use_pieces.sse"),
        200,
        None,
    ),
    # -- the Responses API (byte-exact)
    once("responses-429/plain", RESPONSES, "gpt", False, status_storm(429, "0"), 429, None),
    once(
        "responses-error-before-output/stream",
        RESPONSES,
        "gpt",
        True,
        ResponsesAPI(fault="error-before"),
        502,
        ERROR_EVENT,
    ),
    once(
        "responses-error-after-output/stream",
        RESPONSES,
        "gpt",
        True,
        ResponsesAPI(fault="error-after"),
        200,
        ERROR_EVENT,
    ),
    once(
        "responses-failed/stream",
        RESPONSES,
        "gpt",
        True,
        ResponsesAPI(fault="failed-after"),
        200,
        ERROR_EVENT,
    ),
    once(
        "responses-cut/stream", RESPONSES, "gpt", True, ResponsesAPI(fault="cut"), 200, INCOMPLETE
    ),
    once("responses-answer/stream", RESPONSES, "gpt", True, ResponsesAPI(), 200, None),
]


def _events(data: bytes) -> list[tuple[str, dict[str, Any] | str]]:
    out: list[tuple[str, dict[str, Any] | str]] = []
    for block in data.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, lines = "message", []
        for line in block.decode().split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                lines.append(line[5:].strip())
        if lines:
            text = "\n".join(lines)
            out.append((name, text if text == "[DONE]" else json.loads(text)))
    return out


def _check_stream(fault: Fault, answer: Answer) -> None:
    """The stream ended as its wire format says: complete, or with its error event and
    without its completing event."""
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = _events(answer.body)
    names = [name for name, _ in events]
    last_name, last = events[-1]
    if fault.path == CHAT:
        done = [data for _, data in events if data == "[DONE]"]
        if fault.code is None:
            assert last == "[DONE]"
        else:
            assert done == []
            assert last_name == "error"
            assert isinstance(last, dict)
            assert last["error"]["code"] == fault.code
    elif fault.path == MESSAGES:
        if fault.code is None:
            assert names[0] == "message_start"
            assert last_name == "message_stop"
        else:
            assert "message_stop" not in names
            assert last_name == "error"
            assert isinstance(last, dict)
            assert last["type"] == "error"
            assert set(last["error"]) == {"type", "message"}
    else:
        if fault.code is None:
            assert last_name == "response.completed"
        else:
            assert "response.completed" not in names
            assert last_name == "error"
            assert isinstance(last, dict)
            assert last["code"] == fault.code


def _check_error_body(fault: Fault, answer: Answer) -> None:
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()
    if fault.path == MESSAGES:
        assert error["type"] == "error"
        assert set(error["error"]) == {"type", "message"}
    else:
        assert set(error["error"]) == {"message", "type", "param", "code"}
        if fault.code is not None:
            assert error["error"]["code"] == fault.code


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_dialect_fault(fault: Fault, cell: Cell, gateway: InspectableGateway) -> None:
    for behaviour, times in fault.script:
        cell.fake.enqueue(behaviour, times=times)
    answer = call(gateway.port, fault.path, body(fault.model, fault.path, stream=fault.stream))
    assert answer.status == fault.status, answer.body[:300]
    assert answer.complete
    assert UPSTREAM_SECRET.encode() not in answer.body
    assert len(cell.fake.wait_for_requests(fault.requests)) == fault.requests
    if fault.status == 200 and fault.stream:
        _check_stream(fault, answer)
    elif fault.status != 200:
        _check_error_body(fault, answer)
    line = cell.access_line()
    assert (line["status"], line["path"], line["model"]) == (
        answer.status,
        fault.path,
        fault.model,
    )
    assert line["dialect"] == ("anthropic" if fault.path == MESSAGES else "openai")
    assert line.get("error") == (None if fault.passed_on else fault.code), line


# --------------------------------------------------------------------------- caller leaves


@dataclass(frozen=True)
class Leave:
    id: str
    path: str
    model: str
    upstream: Callable[[], Behaviour]
    marker: bytes  # read until this arrives, then leave


LEAVES = [
    Leave(
        "chat-to-anthropic",
        CHAT,
        "claude-patient",
        lambda: fake_anthropic.Transcript(TOOL_PIECES, delay=0.2),
        b'"content"',
    ),
    Leave("messages-to-openai", MESSAGES, "gpt-patient", lambda: endless_stream(0.02), b" tok"),
    Leave(
        "messages-to-anthropic",
        MESSAGES,
        "claude-patient",
        lambda: fake_anthropic.Transcript(TOOL_PIECES, delay=0.2),
        b"content_block_delta",
    ),
    Leave(
        "responses",
        RESPONSES,
        "gpt-patient",
        lambda: ResponsesAPI(delay=0.2),
        b"response.output_text.delta",
    ),
]


@pytest.mark.parametrize("leave", LEAVES, ids=[leave.id for leave in LEAVES])
def test_a_caller_leaving_mid_stream(leave: Leave, cell: Cell, gateway: InspectableGateway) -> None:
    cell.fake.enqueue(leave.upstream())
    data = msgspec.json.encode(body(leave.model, leave.path, stream=True))
    with RawCaller(gateway.port) as caller:
        caller.send(request_head(len(data), path=leave.path) + data)
        answer = caller.head()
        assert answer.status == 200
        caller.read_until(answer, leave.marker)
    left = time.monotonic()
    line = cell.access_line()
    assert (line["status"], line["error"]) == (200, "client_closed")
    request: RecordedRequest = cell.fake.requests[0]
    closed = cell.fake.wait_for_close(request.connection_id, HANG)
    assert closed is not None
    assert closed - left < 1.0
