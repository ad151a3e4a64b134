"""Connections bounded in time from the accept, and in number (``limits.max_connections``):
silent strangers are closed, the longest-idle connections make room for new ones, and
callers who send requests are served throughout."""

from __future__ import annotations

import json
import resource
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack

import httpx
import msgspec
import pytest

from aifetch.gateway import GatewayConfig
from aifetch.gateway._protocol import connection_cap
from tests.gateway.conftest import RunningGateway, config_for
from tests.gateway.helpers import CHAT, chat

DEADLINE = 0.5
HANG = 10.0

Serve = Callable[[GatewayConfig], RunningGateway]


def _request(body: bytes) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    )


PLAIN = _request(json.dumps(chat("mock-gpt", stream=False)).encode())


def _answer(sock: socket.socket) -> bytes:
    """One whole answer with a Content-Length, read from ``sock``."""
    sock.settimeout(HANG)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _closed(sock: socket.socket, within: float) -> bool:
    """True when the peer closed ``sock`` (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _open(stack: ExitStack, port: int, count: int) -> list[socket.socket]:
    return [
        stack.enter_context(socket.create_connection(("127.0.0.1", port))) for _ in range(count)
    ]


def _wait_for(check: Callable[[], bool], timeout: float = HANG) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _served(gateway: RunningGateway) -> None:
    answer = httpx.post(gateway.url + CHAT, json=chat("mock-gpt", stream=False), timeout=HANG)
    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "chat.completion"


# --- time: the deadline starts at the accept --------------------------------------------


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(serve: Serve) -> None:
    gateway = serve(config_for(limits={"request_timeout": DEADLINE}))
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        started = time.monotonic()
        sock.settimeout(HANG)
        assert sock.recv(65536) == b""  # closed, and nothing written: no request to answer
        waited = time.monotonic() - started
    assert DEADLINE * 0.9 <= waited < HANG / 2


def test_a_first_request_gets_its_408_counted_from_the_accept_not_its_first_byte(
    serve: Serve,
) -> None:
    deadline = 1.0
    gateway = serve(config_for(limits={"request_timeout": deadline}))
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        accepted = time.monotonic()
        time.sleep(deadline * 0.9)  # silent for most of the deadline, then a slow head
        sock.sendall(PLAIN[:20])
        sock.settimeout(HANG)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        waited = time.monotonic() - accepted
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert msgspec.json.decode(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == (
        "request_timeout"
    )
    # From the first byte it would be 1.9 s.
    assert deadline * 0.9 <= waited < deadline * 1.45


def test_a_keep_alive_connection_idle_between_requests_is_not_cut_by_the_deadline(
    serve: Serve,
) -> None:
    gateway = serve(config_for(limits={"request_timeout": DEADLINE}))
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(PLAIN)
        assert _answer(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(DEADLINE * 2.5)  # under uvicorn's keep-alive timeout (5 s)
        sock.sendall(PLAIN)
        assert _answer(sock).startswith(b"HTTP/1.1 200 ")


# --- number: limits.max_connections --------------------------------------------------------

CAP = 8


@pytest.fixture
def capped(serve: Serve) -> RunningGateway:
    # A long request deadline: only the cap closes anything here.
    return serve(config_for(limits={"max_connections": CAP, "request_timeout": 60}))


def _open_count(gateway: RunningGateway) -> int:
    return len(gateway.server.server_state.connections)


def _closed_count(strangers: list[socket.socket]) -> int:
    return sum(_closed(sock, 0.001) for sock in strangers)


@pytest.mark.parametrize("silent", [CAP - 1, CAP, 5 * CAP])
def test_silent_sockets_past_the_cap_never_keep_a_caller_out(
    capped: RunningGateway, silent: int
) -> None:
    with ExitStack() as stack:
        strangers = _open(stack, capped.port, silent)
        # Room is made only when needed: one stranger per connection past the cap.
        _wait_for(lambda: _closed_count(strangers) == max(0, silent - CAP))
        _wait_for(lambda: _open_count(capped) == min(silent, CAP))
        # The first call past a full house closes the longest-idle stranger; when it is
        # over its connection leaves room for the next call.
        room_made = 1 if silent >= CAP else 0
        for _ in range(3):
            _served(capped)  # each call on a new connection
            _wait_for(lambda: _closed_count(strangers) == max(0, silent - CAP) + room_made)
            _wait_for(lambda: _open_count(capped) == min(silent, CAP) - room_made)


def test_the_longest_idle_stranger_goes_first_and_keep_alive_callers_stay(
    capped: RunningGateway,
) -> None:
    with ExitStack() as stack:
        caller = stack.enter_context(socket.create_connection(("127.0.0.1", capped.port)))
        caller.sendall(PLAIN)
        assert _answer(caller).startswith(b"HTTP/1.1 200 ")  # now idle between requests
        strangers = []
        for n in range(1, CAP):
            strangers.extend(_open(stack, capped.port, 1))
            _wait_for(lambda n=n: _open_count(capped) == n + 1)
        newcomer = _open(stack, capped.port, 1)[0]
        assert _closed(strangers[0], HANG)  # the oldest stranger made room
        assert not any(_closed(s, 0.05) for s in strangers[1:])
        # The caller who sent a request keeps its connection while strangers remain, and
        # the newcomer is served too.
        caller.sendall(PLAIN)
        assert _answer(caller).startswith(b"HTTP/1.1 200 ")
        newcomer.sendall(PLAIN)
        assert _answer(newcomer).startswith(b"HTTP/1.1 200 ")


def test_keep_alive_connections_make_room_once_no_stranger_is_left(
    capped: RunningGateway,
) -> None:
    with ExitStack() as stack:
        callers = _open(stack, capped.port, CAP)
        for sock in callers:
            sock.sendall(PLAIN)
            assert _answer(sock).startswith(b"HTTP/1.1 200 ")
        late = _open(stack, capped.port, 1)[0]
        assert _closed(callers[0], HANG)  # idle longest
        assert not any(_closed(s, 0.05) for s in callers[1:])
        late.sendall(PLAIN)
        assert _answer(late).startswith(b"HTTP/1.1 200 ")


def test_when_every_connection_is_busy_a_newcomer_gets_503_and_no_call_is_cut(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    cap = 3
    config = config_for(
        limits={"max_connections": cap, "request_timeout": 60},
        upstreams={"mock": {"kind": "mock", "mock": {"chunks": 10, "interval": 0.1}}},
    )
    gateway = serve(config)
    stream = _request(json.dumps(chat("mock-gpt", stream=True)).encode())
    with ExitStack() as stack:
        busy = _open(stack, gateway.port, cap)
        for sock in busy:
            sock.sendall(stream)
        _wait_for(lambda: gateway.server.app.in_flight == cap)  # type: ignore[union-attr]
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", gateway.port)) as late:
                late.settimeout(HANG)
                answer = late.recv(65536)
            assert answer.startswith(b"HTTP/1.1 503 "), answer[:100]
            error = msgspec.json.decode(answer.partition(b"\r\n\r\n")[2])["error"]
            assert error["code"] == "too_many_connections"
        for sock in busy:
            sock.settimeout(HANG)
            data = b""
            while b"\r\n0\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                assert chunk, data[-200:]
                data += chunk
            assert b"data: [DONE]" in data
    warnings = [r for r in caplog.records if "limits.max_connections" in r.getMessage()]
    assert len(warnings) == 1  # logged once, however often the cap is hit
    assert "refusing new ones with 503" in warnings[0].getMessage()


def test_the_cap_fits_the_file_descriptor_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_cap(10**9, 100) == (soft - 64 - 100, soft)
    assert connection_cap(10, 100) == (10, None)
    assert connection_cap(10**9, 10**9)[0] == 8  # never below a usable few
