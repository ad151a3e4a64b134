"""``limits.request_timeout``: a caller that leaves a request unfinished gets 408 and its
connection closed; a request that finishes in time, the answer that follows it, and an
idle keep-alive connection are never cut by it."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable

import msgspec
import pytest

from aifetch.gateway import GatewayConfig
from tests.gateway.conftest import RunningGateway, config_for
from tests.gateway.helpers import CHAT, chat
from tests.support.fake_upstream import FakeUpstream

DEADLINE = 0.5
HANG = 10.0  # far past the deadline: only a hang takes this long

Serve = Callable[[GatewayConfig], RunningGateway]


def _head(length: int) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % length
    )


def _until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(HANG)
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def _assert_408(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in head.lower()
    error = msgspec.json.decode(body)["error"]
    assert error["code"] == "request_timeout"
    assert str(DEADLINE) in error["message"]


def test_an_unfinished_head_gets_408_then_the_connection_closes(
    fake: FakeUpstream, serve: Serve
) -> None:
    gateway = serve(config_for(fake.url, limits={"request_timeout": DEADLINE}))
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n")
        answer = _until_closed(sock)
        waited = time.monotonic() - started
    _assert_408(answer)
    assert waited >= DEADLINE * 0.9  # the deadline, not at once
    assert fake.requests == []


def test_an_unfinished_body_gets_408_and_nothing_is_forwarded(
    fake: FakeUpstream, serve: Serve
) -> None:
    gateway = serve(config_for(fake.url, limits={"request_timeout": DEADLINE}))
    body = json.dumps(chat(stream=False)).encode()
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(_head(len(body)) + body[:10])
        answer = _until_closed(sock)
    _assert_408(answer)
    assert fake.requests == []


def test_a_request_sent_slowly_but_finished_in_time_is_served(
    fake: FakeUpstream, serve: Serve
) -> None:
    gateway = serve(config_for(fake.url, limits={"request_timeout": 5.0}))
    body = json.dumps(chat(stream=False)).encode()
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(_head(len(body)))
        time.sleep(0.2)
        sock.sendall(body[:10])
        time.sleep(0.2)
        sock.sendall(body[10:])
        sock.settimeout(HANG)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert len(fake.requests) == 1


@pytest.mark.slow  # ~5.6 s: two 1.2 s answers (over twice the deadline), each then 1 s idle
def test_answers_and_idle_connections_outlast_the_deadline(serve: Serve) -> None:
    # The mock streams 8 chunks 0.15 s apart: the answer takes over twice the deadline.
    config = config_for(
        limits={"request_timeout": DEADLINE},
        upstreams={"mock": {"kind": "mock", "mock": {"chunks": 8, "interval": 0.15}}},
    )
    gateway = serve(config)
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=HANG)
    try:
        for _ in range(2):  # the second request reuses the connection after it sat idle
            body = json.dumps(chat("mock-gpt", stream=True))
            conn.request("POST", CHAT, body=body, headers={"content-type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            assert response.status == 200
            assert data.rstrip().endswith(b"data: [DONE]")
            time.sleep(DEADLINE * 2)
    finally:
        conn.close()


def test_a_pipelined_request_waits_for_the_answer_before_it(serve: Serve) -> None:
    # Request 1 streams for over twice the deadline; request 2 follows on the same
    # connection with its body cut short. uvicorn reads request 2 only once answer 1 is
    # out, so the 408 must come after answer 1, whole, never inside it.
    config = config_for(
        limits={"request_timeout": DEADLINE},
        upstreams={"mock": {"kind": "mock", "mock": {"chunks": 8, "interval": 0.15}}},
    )
    gateway = serve(config)
    first = json.dumps(chat("mock-gpt", stream=True)).encode()
    second = json.dumps(chat("mock-gpt", stream=False)).encode()
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(_head(len(first)) + first + _head(len(second)) + second[:10])
        answer = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    done = answer.index(b"data: [DONE]")
    end_of_first = answer.index(b"\r\n0\r\n\r\n", done)  # the chunked body's last chunk
    assert answer.index(b"HTTP/1.1 408 ") == end_of_first + len(b"\r\n0\r\n\r\n")
    _assert_408(answer[end_of_first + len(b"\r\n0\r\n\r\n") :])
