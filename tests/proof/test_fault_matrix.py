"""The fault matrix: every way an upstream or a caller can misbehave, one cell each.

For each cell the test asserts what the caller sees (an HTTP status with an OpenAI error
body before the commit point; after it, the upstream's bytes exactly, then an SSE
``error`` event and no ``data: [DONE]``), what the gateway's JSON access line says, that
nothing leaked (the census in ``_faults_support``: asyncio tasks on the gateway's loop,
calls in flight, pooled and checked-out upstream connections, sockets at both ends, file
descriptors), and that the gateway logged no warning or traceback.

One gateway and one fake upstream serve the whole module: a leak in one cell would show
in that cell's census, and sharing them keeps the file well under a minute.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgspec
import pytest

from tests.support import openai_wire as wire
from tests.support.fake_upstream import (
    MALFORMED_SSE,
    Behaviour,
    ChatStream,
    FakeUpstream,
    RecordedRequest,
    chat_stream,
    endless_stream,
    error_event,
    huge_line,
    invalid_json_event,
    malformed_sse,
    refuse,
    reset_after_headers,
    reset_before_headers,
    reset_mid_stream,
    respond,
    server_error,
    slow_first_byte,
    stall,
    status_storm,
    trickle,
)

from ._faults_support import (
    FIRST_BYTE,
    HANG,
    IDLE,
    TOTAL,
    Answer,
    Cell,
    InspectableGateway,
    LogCapture,
    RawCaller,
    captured_logs,
    chat_body,
    matrix_config,
    post,
    request_head,
    split_error,
)

# --------------------------------------------------------------------------- fixtures


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
    running = InspectableGateway(matrix_config(fake.url))
    running.start()
    try:
        # Warm up (pool, lazy imports) so the first cell's census starts from steady state.
        assert post(running.port, chat_body(stream=True)).status == 200
        logs.wait_access(1)
        yield running
    finally:
        running.stop()


@pytest.fixture
def cell(gateway: InspectableGateway, fake: FakeUpstream, logs: LogCapture) -> Iterator[Cell]:
    logs.other.clear()
    current = Cell(gateway, fake, logs)
    yield current
    current.finish()


# --------------------------------------------------------------------------- upstream faults

FIVE = chat_stream(content="one two three four five", n_chunks=5)
COMPLETION = wire.dumps(wire.chat_completion_body("Hello", model="fake-model", usage=None))
JSON_OK = respond(200, COMPLETION, [("Content-Type", "application/json")])
RETRY_AFTER = "0.1"


def events_of(stream: ChatStream, count: int | None = None) -> Callable[[RecordedRequest], bytes]:
    """The first ``count`` (all if ``None``) events ``stream`` sends for the request."""
    return lambda request: b"".join(stream.events(request)[:count])


def _endless(request: RecordedRequest) -> bytes:
    """Marks the never-ending cell: how many events it sent before the deadline is only
    known from the answer, so ``_check_endless`` checks the relayed part's shape."""
    return b""


Script = tuple[tuple[Behaviour, int], ...]  # the upstream's answers in turn, each n times
Relayed = Callable[[RecordedRequest], bytes] | None


@dataclass(frozen=True)
class Fault:
    """One upstream-fault cell and what must come of it."""

    id: str  # "<fault>/stream" or "<fault>/plain": the kind of call the caller makes
    script: Script
    status: int  # what the caller's HTTP status must be
    code: str | None  # the error code (body or final event); None for a full answer
    # The upstream bytes the caller must receive, exactly (a stream's relayed part or a
    # whole non-stream body); None when an error body stands in for them.
    relayed: Relayed = None
    model: str = "gpt"
    retries: int = 0
    min_seconds: float = 0.0  # a wait the gateway had to honour (Retry-After, a timeout)

    def __post_init__(self) -> None:
        assert self.id.endswith(("/stream", "/plain")), self.id

    @property
    def stream(self) -> bool:
        return self.id.endswith("/stream")

    @property
    def requests(self) -> int:
        return sum(times for _, times in self.script)


def once(
    name: str,
    upstream: Behaviour,
    status: int,
    code: str | None,
    relayed: Relayed = None,
    *,
    model: str = "gpt",
    wait: float = 0.0,
) -> Fault:
    """A cell in which the upstream answers once (models ``gpt`` and ``gpt-total`` make
    one attempt)."""
    return Fault(name, ((upstream, 1),), status, code, relayed, model, min_seconds=wait)


def both(name: str, upstream: Behaviour, status: int, code: str) -> list[Fault]:
    """The same fault with the same outcome for a stream and for a plain call."""
    return [once(f"{name}/{kind}", upstream, status, code) for kind in ("stream", "plain")]


ATTEMPTS = 3  # model ``gpt-retry``
_UPSTREAM_429 = wire.dumps(
    wire.error_body(
        "fake upstream status 429", type="rate_limit_exceeded", code="rate_limit_exceeded"
    )
)
_UPSTREAM_503 = wire.dumps(
    wire.error_body("fake upstream status 503", type="server_error", code="server_error")
)
# What a storm that outlasts the attempts ends in: the upstream's last answer as it was
# sent, and the code in its body.
_PASSED_ON = {429: (_UPSTREAM_429, "rate_limit_exceeded"), 503: (_UPSTREAM_503, "server_error")}


def storm(status: int, times: int) -> list[Fault]:
    """``times`` answers of ``status`` in a row to model ``gpt-retry``, for a stream and for
    a plain call: retried while attempts last (after the upstream's ``Retry-After`` on a
    429), then the last one is passed on as it came."""
    retries = min(times, ATTEMPTS - 1)  # a failed try is retried while attempts are left
    if status == 429:  # every retry waits the upstream's Retry-After
        burst = status_storm(429, retry_after=RETRY_AFTER), times
        wait = retries * float(RETRY_AFTER)
    else:
        burst, wait = (server_error(status), times), 0.0
    kind = "429-storm" if status == 429 else "5xx-burst"
    name = f"{kind}-{'shorter' if times < ATTEMPTS else 'longer'}-than-retries"

    def make(mode: str, script: Script, outcome: tuple[int, str | None, Relayed]) -> Fault:
        return Fault(f"{name}/{mode}", script, *outcome, "gpt-retry", retries, wait)

    if times < ATTEMPTS:  # the answer after the burst comes through whole
        return [
            make("stream", (burst, (FIVE, 1)), (200, None, events_of(FIVE))),
            make("plain", (burst, (JSON_OK, 1)), (200, None, _completion)),
        ]
    body, code = _PASSED_ON[status]
    passed_on = (status, code, lambda _: body)
    return [make(mode, (burst,), passed_on) for mode in ("stream", "plain")]


def _completion(request: RecordedRequest) -> bytes:
    return COMPLETION


# A pause between bytes so each one is its own write on the wire, not coalesced.
BYTE_GAP = 0.0005
TRICKLE = trickle(delay_per_byte=BYTE_GAP)
JSON_TRICKLE = trickle(COMPLETION, BYTE_GAP, content_type="application/json")


def _big_after_content() -> ChatStream:
    """A 4 MiB data line after the first content event: under the SSE block bound
    (16 MiB), so it must arrive whole."""
    big = b"data: " + b"x" * (4 * 1024 * 1024) + b"\n\n"
    head = FIVE.events(RecordedRequest("POST", "/", "/", "HTTP/1.1", [], b"{}", 0, 0.0))
    return chat_stream([*head[:2], big, *head[2:-1]])


HUGE_LATE = _big_after_content()
LATE_ERROR = error_event(before_content=False)
BAD_JSON = invalid_json_event()
ENDLESS = endless_stream(0.02)
UNREACHABLE, RESET, TIMEOUT = "upstream_unreachable", "upstream_reset", "upstream_timeout"
ERROR_EVENT, NO_CONTENT = "upstream_error_event", "upstream_no_content"

# One row a cell (``both``: two), read as: the cell, the upstream's answer, the caller's
# status, the error code, the upstream bytes the caller must get exactly, the wait.
FAULTS = [
    # -- the upstream never answers properly: nothing was relayed, so a clean HTTP error.
    *both("refuse", refuse(), 502, UNREACHABLE),
    *both("reset-before-headers", reset_before_headers(), 502, UNREACHABLE),
    *both("reset-after-headers", reset_after_headers(), 502, RESET),
    once("slow-first-byte/stream", slow_first_byte(HANG), 504, TIMEOUT, wait=FIRST_BYTE),
    once("slow-first-byte/plain", slow_first_byte(HANG, JSON_OK), 504, TIMEOUT, wait=FIRST_BYTE),
    once("stall-before-content/stream", stall(after_events=1), 504, TIMEOUT, wait=IDLE),
    once("stall-mid-body/plain", stall(after_events=1), 504, TIMEOUT, wait=IDLE),
    once("error-event-before-content/stream", error_event(before_content=True), 502, ERROR_EVENT),
    once("huge-line-before-content/stream", huge_line(2 * 1024 * 1024), 502, NO_CONTENT),
    # -- failures after the commit point: the relayed bytes, then an error event, no [DONE].
    once("reset-mid-stream/stream", reset_mid_stream(3, FIVE), 200, RESET, events_of(FIVE, 3)),
    once("reset-mid-body/plain", reset_mid_stream(3, FIVE), 502, RESET),
    once("stall-mid-stream/stream", stall(3, FIVE), 200, TIMEOUT, events_of(FIVE, 3), wait=IDLE),
    once(
        "error-event-after-content/stream", LATE_ERROR, 200, ERROR_EVENT, events_of(LATE_ERROR, 2)
    ),
    once("endless-stream/stream", ENDLESS, 200, TIMEOUT, _endless, model="gpt-total", wait=TOTAL),
    # -- harmless faults: the whole answer, byte for byte.
    once("trickle/stream", TRICKLE, 200, None, lambda _: TRICKLE.body),
    once("trickle/plain", JSON_TRICKLE, 200, None, _completion),
    once("malformed-sse/stream", malformed_sse(), 200, None, lambda _: MALFORMED_SSE),
    once("invalid-json-event/stream", BAD_JSON, 200, None, events_of(BAD_JSON)),
    once("huge-line-after-content/stream", HUGE_LATE, 200, None, events_of(HUGE_LATE)),
    # -- storms: retried with the server's wait while attempts last, then passed on.
    *storm(429, times=2),
    *storm(429, times=3),
    *storm(503, times=2),
    *storm(503, times=3),
]


def _check_stream(fault: Fault, answer: Answer, request: RecordedRequest) -> None:
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.complete, "the gateway's response framing must end properly"
    relayed, error = split_error(answer.body)
    if fault.relayed is _endless:
        _check_endless(relayed)
    else:
        assert fault.relayed is not None
        expected = fault.relayed(request)
        # Nothing lost, nothing altered: the caller got exactly the upstream's bytes.
        assert relayed == expected, (len(relayed), len(expected))
    if fault.code is None:
        assert error is None
        assert relayed.endswith(wire.SSE_DONE)
    else:
        assert error is not None
        assert error["code"] == fault.code, error
        # A truncated answer must never look complete.
        assert b"[DONE]" not in relayed


def _check_endless(relayed: bytes) -> None:
    role = wire.sse_event(wire.chat_chunk({"role": "assistant", "content": ""}))
    tok = wire.sse_event(wire.chat_chunk({"content": " tok"}))
    assert relayed.startswith(role)
    rest = relayed[len(role) :]
    count = rest.count(tok)
    # Whole events only, in order: the deadline cut falls between events, never inside one.
    assert count > 5
    assert rest == tok * count


def _check_error_body(fault: Fault, answer: Answer, request: RecordedRequest) -> None:
    assert answer.complete
    assert answer.headers["content-type"] == "application/json"
    if fault.relayed is not None:
        # The upstream's own error body is passed on as it was sent.
        assert answer.body == fault.relayed(request)
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == fault.code
    if fault.status == 429:
        assert answer.headers["retry-after"] == RETRY_AFTER


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_upstream_fault(fault: Fault, cell: Cell, gateway: InspectableGateway) -> None:
    for behaviour, times in fault.script:
        cell.fake.enqueue(behaviour, times=times)
    started = time.monotonic()
    answer = post(gateway.port, chat_body(fault.model, stream=fault.stream))
    elapsed = time.monotonic() - started

    assert answer.status == fault.status, answer.body[:300]
    # The wait was honoured, not skipped; timers may fire a hair early (0.99985 s for a
    # 1 s deadline was seen), so allow 5% under.
    assert elapsed >= 0.95 * fault.min_seconds
    requests = cell.fake.wait_for_requests(fault.requests)
    assert len(requests) == fault.requests  # retried exactly as configured, no more
    if fault.status == 200 and fault.stream:
        _check_stream(fault, answer, requests[-1])
    elif fault.status == 200:
        assert answer.complete
        assert fault.relayed is not None
        assert answer.body == fault.relayed(requests[-1])
    else:
        _check_error_body(fault, answer, requests[-1])

    line = cell.access_line()
    assert line["status"] == answer.status
    assert line["model"] == fault.model
    assert line.get("stream", False) is fault.stream
    # The gateway's own errors are named in the line; an upstream's error status passed
    # on as it came is told by ``status`` alone.
    passed_on = fault.status >= 400 and fault.relayed is not None
    assert line.get("error") == (None if passed_on else fault.code), line
    assert line.get("retries", 0) == fault.retries


# --------------------------------------------------------------------------- caller faults


def _leave_during_body(caller: RawCaller, body: bytes, fake: FakeUpstream) -> None:
    caller.send(request_head(len(body)) + body[: len(body) // 2])


def _leave_before_body(caller: RawCaller, body: bytes, fake: FakeUpstream) -> None:
    caller.send(request_head(len(body)))


def _leave_before_headers(caller: RawCaller, body: bytes, fake: FakeUpstream) -> None:
    caller.send(request_head(len(body)) + body)
    fake.wait_for_requests(1, HANG)


def _leave_after_headers(caller: RawCaller, body: bytes, fake: FakeUpstream) -> None:
    caller.send(request_head(len(body)) + body)
    assert caller.head().status == 200


def _leave_mid_stream(caller: RawCaller, body: bytes, fake: FakeUpstream) -> None:
    caller.send(request_head(len(body)) + body)
    answer = caller.head()
    assert caller.read_until(answer, b" tok").count(b"data: ") >= 2


def _leave_during_retry_wait(caller: RawCaller, body: bytes, fake: FakeUpstream) -> None:
    caller.send(request_head(len(body)) + body)
    fake.wait_for_requests(1, HANG)


@dataclass(frozen=True)
class Leave:
    """A caller that goes away at one phase of the exchange."""

    id: str
    stream: bool
    upstream: Behaviour | None  # None: the upstream must never be called
    act: Callable[[RawCaller, bytes, FakeUpstream], None]
    model: str = "gpt-patient"
    # The status the caller had already been sent: 200 once a stream was committed.
    status: int = 499
    # False when no upstream exchange is open at the moment the caller leaves (it waits
    # between retries): its pooled connection may stay, but no further attempt is made.
    closes_upstream: bool = True


# Long upstream waits (HANG) and a patient model: only the disconnect can end these calls.
LEAVES = [
    Leave("during-request-body", True, None, _leave_during_body),
    Leave("before-request-body", True, None, _leave_before_body),
    Leave("before-headers/stream", True, slow_first_byte(HANG), _leave_before_headers),
    Leave("before-headers/plain", False, slow_first_byte(HANG, JSON_OK), _leave_before_headers),
    Leave(
        "during-retry-wait/stream",
        True,
        status_storm(429, retry_after="5"),
        _leave_during_retry_wait,
        model="gpt-retry",
        closes_upstream=False,
    ),
    Leave("after-headers/stream", True, endless_stream(0.02), _leave_after_headers, status=200),
    Leave("mid-stream/stream", True, endless_stream(0.02), _leave_mid_stream, status=200),
    # A short stream (~0.2 s) whose caller leaves at once: it would end before a watch
    # started by the sweep over calls in flight, so its commit must start the watch.
    Leave(
        "early-in-a-short-stream/stream",
        True,
        chat_stream(n_chunks=10, delay=0.02),
        _leave_after_headers,
        status=200,
    ),
]


@pytest.mark.parametrize("leave", LEAVES, ids=[c.id for c in LEAVES])
def test_caller_disconnect(leave: Leave, cell: Cell, gateway: InspectableGateway) -> None:
    if leave.upstream is not None:
        cell.fake.enqueue(leave.upstream)
    body = msgspec.json.encode(chat_body(leave.model, stream=leave.stream))
    with RawCaller(gateway.port) as caller:
        leave.act(caller, body, cell.fake)
    left = time.monotonic()

    line = cell.access_line()
    assert line["status"] == leave.status, line
    assert line["error"] == "client_closed"
    if leave.upstream is None:
        assert cell.fake.requests == []  # nothing forwarded for a request never received
        return
    if not leave.closes_upstream:
        # The access line is written once the call has ended: no attempt came after it.
        assert len(cell.fake.requests) == 1
        return
    # The upstream call is cancelled and its connection closed at once, long before any
    # gateway timeout could have ended it.
    request = cell.fake.requests[0]
    closed = cell.fake.wait_for_close(request.connection_id, HANG)
    assert closed is not None
    assert closed - left < 1.0


# --------------------------------------------------------------------------- slow and large callers


def test_slow_reader_gets_every_byte(cell: Cell, gateway: InspectableGateway) -> None:
    """A caller that reads in small sips and pauses longer than the upstream idle timeout:
    back-pressure must neither lose bytes nor be blamed on the upstream as a stall."""
    stream = chat_stream(content=wire.synthetic_content(3000))
    cell.fake.enqueue(stream)
    body = msgspec.json.encode(chat_body(stream=True))
    with RawCaller(gateway.port, rcvbuf=4096) as caller:
        caller.send(request_head(len(body)) + body)
        answer = caller.head()
        got = bytearray()
        for i, piece in enumerate(caller.pieces(answer, read_size=1024)):
            got += piece
            if i in (3, 40):
                time.sleep(2 * IDLE)  # the slow reader under test, not synchronisation
    assert answer.status == 200
    assert answer.complete
    request = cell.fake.wait_for_requests(1)[0]
    assert bytes(got) == b"".join(stream.events(request))
    line = cell.access_line()
    assert line["status"] == 200
    assert "error" not in line
    assert line["completion_tokens"] == 3000


def test_slow_body_is_read_whole_before_forwarding(cell: Cell, gateway: InspectableGateway) -> None:
    body = msgspec.json.encode(chat_body(stream=True))
    with RawCaller(gateway.port) as caller:
        caller.send(request_head(len(body)))
        for i in range(0, len(body), 16):
            assert cell.fake.requests == []  # nothing goes upstream before the body is whole
            caller.send(body[i : i + 16])
            time.sleep(0.02)  # the slow sender under test
        answer = caller.answer()
    assert answer.status == 200
    assert answer.body.endswith(wire.SSE_DONE)
    assert (
        cell.fake.wait_for_requests(1)[0].json()["messages"] == chat_body(stream=True)["messages"]
    )
    assert cell.access_line()["status"] == 200


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_oversized_body_is_413_and_not_forwarded(
    framing: str, cell: Cell, gateway: InspectableGateway
) -> None:
    limit = gateway.config.limits.max_body_bytes
    body = b'{"model": "gpt", "pad": "' + b"x" * (limit + 1) + b'"}'
    with RawCaller(gateway.port) as caller:
        if framing == "content-length":
            # Refused on the declared length alone: the body is never read.
            caller.send(request_head(len(body)))
        else:
            caller.send(request_head(None))
            # The gateway may answer and close before the whole body went out.
            with contextlib.suppress(OSError):
                for i in range(0, len(body), 8192):
                    piece = body[i : i + 8192]
                    caller.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        answer = caller.answer()
    assert answer.status == 413
    assert answer.json()["error"]["code"] == "request_too_large"
    line = cell.access_line()
    assert line["status"] == 413
    assert line["error"] == "request_too_large"
    assert cell.fake.requests == []


@pytest.mark.parametrize(
    ("count", "size"),
    [(1, 128 * 1024), (2000, 64), (40, 8000)],
    ids=["one-huge-header", "many-small-headers", "many-large-headers"],
)
def test_header_flood_is_431_and_not_forwarded(
    count: int, size: int, cell: Cell, gateway: InspectableGateway
) -> None:
    body = msgspec.json.encode(chat_body(stream=False))
    flood = [(f"x-flood-{i}", "v" * size) for i in range(count)]
    with RawCaller(gateway.port) as caller:
        # The gateway may refuse and close before the whole head went out.
        with contextlib.suppress(OSError):
            caller.send(request_head(len(body), extra=flood) + body)
        answer = caller.answer()
    assert answer.status == 431
    assert answer.headers["connection"] == "close"
    error = answer.json()["error"]
    assert error["code"] == "request_header_too_large"
    assert set(error) == {"message", "type", "param", "code"}
    assert cell.fake.requests == []
    # Refused before the app is called: no access line, one warning naming the bound.
    cell.lines_expected = 0
    cell.warnings_expected = ["refused a request head over 65536 bytes"]


def test_headers_under_the_bound_are_served(cell: Cell, gateway: InspectableGateway) -> None:
    """The head bound is not a body bound: a large body with a small head passes, and so
    does a head just under the bound."""
    payload = chat_body(stream=False)
    payload["pad"] = "x" * 60_000
    body = msgspec.json.encode(payload)
    extra = [(f"x-h-{i}", "v" * 900) for i in range(60)]  # ~55 KiB of headers
    cell.fake.enqueue(JSON_OK)
    with RawCaller(gateway.port) as caller:
        caller.send(request_head(len(body), extra=extra) + body)
        answer = caller.answer()
    assert answer.status == 200
    assert answer.body == COMPLETION
    assert cell.fake.wait_for_requests(1)[0].json()["pad"] == payload["pad"]
    assert cell.access_line()["status"] == 200
