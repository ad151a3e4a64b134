"""Tests for the scripted fake upstream, driven by raw sockets only.

The project's own client is not used here, so a bug in it cannot hide a bug in
the server every other network test relies on.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import openai_wire as wire
from tests.support.fake_upstream import (
    INVALID_JSON_EVENT,
    MALFORMED_SSE,
    Exchange,
    FakeUpstream,
    chat_completion,
    chat_stream,
    echo,
    embeddings,
    endless_stream,
    error_event,
    huge_line,
    invalid_json_event,
    malformed_sse,
    models,
    raw,
    redirect,
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

TIMEOUT = 5.0  # generous: only there to turn a hang into a failure
ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- raw client


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    chunk_sizes: list[int]

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[bytes]:
        """The ``data:`` payloads of a simple, well-formed SSE body."""
        blocks = [b for b in self.body.split(b"\n\n") if b]
        return [b.removeprefix(b"data: ") for b in blocks]


class RawClient:
    """A minimal blocking HTTP/1.1 client over one socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self, method: str, target: str, body: bytes | None = None, headers: str = ""
    ) -> None:
        length = f"Content-Length: {len(body)}\r\n" if body is not None else ""
        head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}{length}\r\n"
        self.send(head.encode() + (body or b""))

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("server closed the connection")
        self.buf += data

    def read_until(self, sep: bytes) -> bytes:
        while (i := self.buf.find(sep)) < 0:
            self._fill()
        out, self.buf = self.buf[: i + len(sep)], self.buf[i + len(sep) :]
        return out

    def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self) -> tuple[int, str, list[tuple[str, str]]]:
        lines = self.read_until(b"\r\n\r\n")[:-4].decode("latin-1").split("\r\n")
        _, status, reason = lines[0].split(" ", 2)
        headers = [(n, v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
        return int(status), reason, headers

    def read_chunk(self) -> bytes:
        """One chunk's data; the last chunk (and its CRLF, no trailers here) reads as b""."""
        size = int(self.read_until(b"\r\n")[:-2], 16)
        data = self.read_exactly(size)
        assert self.read_exactly(2) == b"\r\n"
        return data

    def read_response(self) -> RawResponse:
        status, reason, headers = self.read_head()
        fields = {n.lower(): v for n, v in headers}
        sizes: list[int] = []
        if fields.get("transfer-encoding") == "chunked":
            body = b""
            while chunk := self.read_chunk():
                sizes.append(len(chunk))
                body += chunk
        else:
            body = self.read_exactly(int(fields.get("content-length", "0")))
        return RawResponse(status, reason, headers, body, sizes)

    def read_to_end(self) -> bytes:
        """Everything until the server closes; raises ConnectionResetError on RST."""
        while True:
            data = self.sock.recv(65536)
            if not data:
                out, self.buf = self.buf, b""
                return out
            self.buf += data


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    threads_before = threading.active_count()
    server = FakeUpstream()
    with server:
        yield server
    assert server.open_connections == 0
    assert threading.active_count() == threads_before


@pytest.fixture
def client(upstream: FakeUpstream) -> Iterator[RawClient]:
    c = RawClient(upstream.port)
    yield c
    c.close()


def chat_body(**extra: Any) -> bytes:
    body = {"model": "m1", "messages": [{"role": "user", "content": "say hi please"}]}
    return json.dumps({**body, **extra}).encode()


def chunks_of(resp: RawResponse) -> list[dict[str, Any]]:
    return [json.loads(e) for e in resp.events() if e != b"[DONE]"]


def content_of(resp: RawResponse) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks_of(resp) if c["choices"]
    )


# --------------------------------------------------------------------------- default handler


def test_default_chat_completion_uses_request_model_and_records_auth(
    upstream: FakeUpstream, client: RawClient
) -> None:
    client.request("POST", "/v1/chat/completions", chat_body(), "Authorization: Bearer sk-1\r\n")
    resp = client.read_response()
    data = resp.json()
    assert resp.status == 200
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"] == "Hello from m1"
    assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert upstream.requests[0].header("authorization") == "Bearer sk-1"


def test_default_chat_stream_with_usage(client: RawClient) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})
    client.request("POST", "/v1/chat/completions", body)
    resp = client.read_response()
    chunks = chunks_of(resp)
    assert resp.header("content-type") == "text/event-stream"
    assert resp.events()[-1] == b"[DONE]"
    assert content_of(resp) == "Hello from m1"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_default_chat_stream_without_usage_has_no_usage_chunk(client: RawClient) -> None:
    client.request("POST", "/v1/chat/completions", chat_body(stream=True))
    chunks = chunks_of(client.read_response())
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)


def test_default_completions_embeddings_models_and_404(client: RawClient) -> None:
    client.request("POST", "/v1/completions", json.dumps({"model": "m2", "prompt": "x"}).encode())
    assert client.read_response().json()["choices"][0]["text"] == "Hello from m2"
    client.request("POST", "/v1/embeddings", json.dumps({"input": ["a", "b"]}).encode())
    vectors = [d["embedding"] for d in client.read_response().json()["data"]]
    assert len(vectors) == 2
    assert len(vectors[0]) == 8
    assert vectors[0] != vectors[1]
    client.request("GET", "/v1/models")
    assert wire.DEFAULT_MODEL in [m["id"] for m in client.read_response().json()["data"]]
    client.request("GET", "/nope")
    resp = client.read_response()
    assert resp.status == 404
    assert "Unknown route" in resp.json()["error"]["message"]


def test_default_stream_completions(client: RawClient) -> None:
    body = json.dumps({"model": "m3", "prompt": "x", "stream": True}).encode()
    client.request("POST", "/v1/completions", body)
    resp = client.read_response()
    texts = [json.loads(e)["choices"][0]["text"] for e in resp.events()[:-1]]
    assert "".join(texts) == "Hello from m3"
    assert resp.events()[-1] == b"[DONE]"


def test_default_rejects_invalid_json(client: RawClient) -> None:
    client.request("POST", "/v1/chat/completions", b"{not json")
    resp = client.read_response()
    assert resp.status == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"


# --------------------------------------------------------------------------- HTTP/1.1 mechanics


def test_keep_alive_two_requests_on_one_connection(
    upstream: FakeUpstream, client: RawClient
) -> None:
    client.request("GET", "/echo/1")
    first = client.read_response().json()
    client.request("GET", "/echo/2")
    second = client.read_response().json()
    assert first["connection_id"] == second["connection_id"]
    assert upstream.connections_opened == 1
    assert [r.target for r in upstream.requests] == ["/echo/1", "/echo/2"]


def test_chunked_request_body_is_decoded(upstream: FakeUpstream, client: RawClient) -> None:
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    assert client.read_response().json()["body"] == "hello world"
    assert upstream.requests[0].body == b"hello world"


def test_body_larger_than_read_buffer(upstream: FakeUpstream, client: RawClient) -> None:
    body = bytes(range(256)) * (3 * 1024 * 1024 // 256)
    client.request("POST", "/v1/anything", body)
    assert client.read_response().status == 404
    assert upstream.requests[0].body == body


def test_expect_100_continue(client: RawClient) -> None:
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    )
    assert client.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.send(b"abc")
    assert client.read_response().json()["body"] == "abc"


def test_http_1_0_closes_after_response(upstream: FakeUpstream, client: RawClient) -> None:
    client.send(b"GET /echo HTTP/1.0\r\n\r\n")
    resp = client.read_response()
    assert resp.header("connection") == "close"
    assert client.read_to_end() == b""
    assert upstream.wait_for_close(upstream.requests[0].connection_id, TIMEOUT) is not None


def test_malformed_request_line_gets_400(client: RawClient) -> None:
    client.send(b"NONSENSE\r\n\r\n")
    resp = client.read_response()
    assert resp.status == 400
    assert client.read_to_end() == b""


def test_echo_reports_request_exactly(client: RawClient) -> None:
    client.request("POST", "/echo/x?a=1&b=2", b"\xff\x00", "X-First: 1\r\nx-second: 2\r\n")
    data = client.read_response().json()
    assert data["method"] == "POST"
    assert data["target"] == "/echo/x?a=1&b=2"
    assert data["query"] == "a=1&b=2"
    assert data["headers"][1:3] == [["X-First", "1"], ["x-second", "2"]]
    assert data["body"] is None
    assert base64.b64decode(data["body_base64"]) == b"\xff\x00"


# --------------------------------------------------------------------------- scripting


def test_queue_consumed_in_order_then_default(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(respond(201, "one"))
    upstream.enqueue(respond(202, {"two": 2}), times=2)
    statuses = []
    for _ in range(4):
        client.request("GET", "/echo")
        statuses.append(client.read_response().status)
    assert statuses == [201, 202, 202, 200]


def test_enqueue_with_path_only_matches_that_path(
    upstream: FakeUpstream, client: RawClient
) -> None:
    upstream.enqueue(respond(418), path="/v1/*")
    client.request("GET", "/echo")
    assert client.read_response().status == 200
    client.request("GET", "/v1/anything")
    assert client.read_response().status == 418


def test_route_is_permanent_and_reset_clears_it(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.route("get", "/r", respond(204))
    for _ in range(2):
        client.request("GET", "/r")
        assert client.read_response().status == 204
    upstream.reset()
    assert upstream.requests == []
    client.request("GET", "/r")
    assert client.read_response().status == 404


def test_respond_body_kinds_headers_and_reason(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(respond(200, {"a": 1}, {"X-Y": "z"}, reason="Fine"))
    upstream.enqueue(respond(200, "text"))
    client.request("GET", "/")
    resp = client.read_response()
    assert (resp.reason, resp.header("x-y"), resp.json()) == ("Fine", "z", {"a": 1})
    assert resp.header("content-type") == "application/json"
    client.request("GET", "/")
    resp = client.read_response()
    assert (resp.body, resp.header("content-type")) == (b"text", "text/plain; charset=utf-8")


def test_wait_for_requests_times_out(upstream: FakeUpstream) -> None:
    with pytest.raises(TimeoutError, match="expected 1 requests"):
        upstream.wait_for_requests(1, timeout=0.05)


# --------------------------------------------------------------------------- OpenAI behaviours


def test_chat_completion_with_tool_calls(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(chat_completion(None, tool_calls=[{"name": "f", "arguments": {"x": 1}}]))
    client.request("POST", "/v1/chat/completions", chat_body())
    choice = client.read_response().json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"x":1}'}


def test_chat_stream_tool_calls_accumulate(upstream: FakeUpstream, client: RawClient) -> None:
    call = {"name": "lookup", "arguments": '{"city": "Paris"}'}
    upstream.enqueue(chat_stream(content="", tool_calls=[call]))
    client.request("POST", "/v1/chat/completions", chat_body(stream=True))
    deltas = [c["choices"][0]["delta"] for c in chunks_of(client.read_response())]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["function"]["name"] == "lookup"
    assert "".join(c["function"]["arguments"] for c in calls) == call["arguments"]


def test_chat_stream_options(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(chat_stream(content="abcdef", n_chunks=3, usage="always", done=False))
    client.request("POST", "/v1/chat/completions", chat_body(stream=True))
    resp = client.read_response()
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks_of(resp) if c["choices"]]
    assert pieces[1:4] == ["ab", "cd", "ef"]
    assert chunks_of(resp)[-1]["usage"]["completion_tokens"] == 1
    assert b"[DONE]" not in resp.body


def test_chat_stream_explicit_chunks_comments_and_delay(
    upstream: FakeUpstream, client: RawClient
) -> None:
    raw_event = b"event: custom\ndata: x\n\n"
    upstream.enqueue(chat_stream([{"a": 1}, raw_event], delay=0.02, comments_between=True))
    started = time.monotonic()
    client.request("GET", "/")
    resp = client.read_response()
    assert time.monotonic() - started >= 0.04
    assert resp.body == b'data: {"a":1}\n\n: keep-alive\n\n' + raw_event + b": keep-alive\n\n" + (
        wire.SSE_DONE
    )


def test_embeddings_dim(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(embeddings(dim=3))
    client.request("POST", "/v1/embeddings", json.dumps({"input": "hi"}).encode())
    assert len(client.read_response().json()["data"][0]["embedding"]) == 3


def test_models_list(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(models(["a", "b"]))
    client.request("GET", "/v1/models")
    assert [m["id"] for m in client.read_response().json()["data"]] == ["a", "b"]


# --------------------------------------------------------------------------- faults


def test_refuse_closes_without_a_byte(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(refuse())
    client.request("GET", "/")
    assert client.read_to_end() == b""


def test_reset_before_headers(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(reset_before_headers())
    client.request("GET", "/")
    with pytest.raises(ConnectionResetError):
        client.read_to_end()
    assert client.buf == b""


def test_reset_after_headers(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(reset_after_headers(201))
    client.request("GET", "/")
    with pytest.raises(ConnectionResetError):
        client.read_to_end()
    assert client.buf.startswith(b"HTTP/1.1 201 Created\r\n")
    assert client.buf.endswith(b"Transfer-Encoding: chunked\r\n\r\n")


def test_reset_mid_stream_after_k_events(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(reset_mid_stream(after_events=3))
    client.request("POST", "/v1/chat/completions", chat_body(stream=True))
    client.read_head()
    events = [client.read_chunk() for _ in range(3)]
    assert json.loads(events[2].removeprefix(b"data: "))["choices"][0]["delta"] == {
        "content": " tok1"
    }
    with pytest.raises(ConnectionResetError):
        client.read_to_end()


def test_stall_then_peer_close_is_recorded(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(stall(after_events=2))
    client.request("POST", "/v1/chat/completions", chat_body(stream=True))
    client.read_head()
    assert len([client.read_chunk() for _ in range(2)]) == 2
    client.sock.settimeout(0.1)
    with pytest.raises(TimeoutError):  # silent, not closed
        client.read_chunk()
    cid = upstream.requests[0].connection_id
    closed_by_client = time.monotonic()
    client.close()
    seen = upstream.wait_for_close(cid, timeout=TIMEOUT)
    assert seen is not None
    assert 0 <= seen - closed_by_client < 1.0


def test_wait_for_close_none_while_open(upstream: FakeUpstream, client: RawClient) -> None:
    client.request("GET", "/echo")
    client.read_response()
    assert upstream.wait_for_close(upstream.requests[0].connection_id, timeout=0.05) is None


def test_endless_stream_until_peer_closes(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(endless_stream(interval=0.01))
    client.request("GET", "/")
    client.read_head()
    events = [client.read_chunk() for _ in range(5)]
    assert all(e.startswith(b"data: ") for e in events)
    client.close()
    assert upstream.wait_for_close(1, timeout=TIMEOUT) is not None


def test_trickle_sends_one_byte_per_chunk(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(trickle("data: hi\n\n", delay_per_byte=0.001))
    client.request("GET", "/")
    resp = client.read_response()
    assert resp.body == b"data: hi\n\n"
    assert resp.chunk_sizes == [1] * len(resp.body)


def test_default_trickle_is_a_whole_chat_stream(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(trickle())
    client.request("GET", "/")
    assert content_of(client.read_response()) == "Hello world"


def test_malformed_sse(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(malformed_sse())
    client.request("GET", "/")
    resp = client.read_response()
    assert resp.body == MALFORMED_SSE
    payloads = _spec_data_payloads(resp.body)
    assert payloads[-1] == b"[DONE]"
    assert "".join(
        json.loads(p)["choices"][0]["delta"].get("content", "") for p in payloads[:-1]
    ) == ("Hello world")


def _spec_data_payloads(body: bytes) -> list[bytes]:
    """The data of each dispatched event, per HTML §9.2.6 (any line ending, comments skipped)."""
    payloads: list[bytes] = []
    data: list[bytes] = []
    for line in re.split(rb"\r\n|\r|\n", body):
        if not line:
            if data:
                payloads.append(b"\n".join(data))
            data = []
        elif line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
    return payloads


def test_invalid_json_event(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(invalid_json_event())
    client.request("GET", "/")
    events = client.read_response().events()
    bad = [e for e in events if e != b"[DONE]" and not _is_json(e)]
    assert bad == [INVALID_JSON_EVENT.removeprefix(b"data: ").rstrip(b"\n")]
    assert events[-1] == b"[DONE]"


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(("before_content", "contents"), [(True, []), (False, ["Hello"])])
def test_error_event(
    upstream: FakeUpstream, client: RawClient, before_content: bool, contents: list[str]
) -> None:
    upstream.enqueue(error_event(before_content))
    client.request("GET", "/")
    resp = client.read_response()
    payloads = [json.loads(e) for e in resp.events()]
    assert payloads[-1]["error"]["type"] == "server_error"
    assert [p["choices"][0]["delta"]["content"] for p in payloads[1:-1]] == contents
    assert b"[DONE]" not in resp.body


def test_status_storm_then_success(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(status_storm(429, retry_after="1"), times=2)
    seen = []
    for _ in range(3):
        client.request("POST", "/v1/chat/completions", chat_body())
        resp = client.read_response()
        seen.append((resp.status, resp.header("retry-after")))
    assert seen == [(429, "1"), (429, "1"), (200, None)]


def test_server_error_body(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(server_error(502))
    client.request("GET", "/")
    resp = client.read_response()
    assert (resp.status, resp.reason) == (502, "Bad Gateway")
    assert resp.json()["error"]["code"] == "server_error"


def test_huge_line(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(huge_line(200_000))
    client.request("GET", "/")
    body = client.read_response().body
    assert body == b"data: " + b"x" * 200_000 + b"\n\n"


def test_slow_first_byte(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(slow_first_byte(0.2, then=respond(200, "late")))
    started = time.monotonic()
    client.request("GET", "/")
    assert client.read_response().body == b"late"
    assert time.monotonic() - started >= 0.2


def test_slow_first_byte_notices_peer_leaving(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(slow_first_byte(30))
    client.request("GET", "/")
    upstream.wait_for_requests(1)
    client.close()
    assert upstream.wait_for_close(1, timeout=TIMEOUT) is not None


def test_redirect(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(redirect(307, "/echo"))
    client.request("GET", "/")
    resp = client.read_response()
    assert (resp.status, resp.header("location"), resp.body) == (307, "/echo", b"")


def test_echo_behaviour_on_any_path(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(echo())
    client.request("PUT", "/v1/anything", b"x")
    assert client.read_response().json()["method"] == "PUT"


def test_raw_bytes(upstream: FakeUpstream, client: RawClient) -> None:
    upstream.enqueue(raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"))
    client.request("GET", "/")
    assert client.read_to_end().endswith(b"short")


# --------------------------------------------------------------------------- lifecycle


def test_stop_closes_live_connections_and_threads() -> None:
    threads_before = threading.active_count()
    with FakeUpstream() as up:
        up.enqueue(stall(after_events=1))
        c = RawClient(up.port)
        c.request("GET", "/")
        up.wait_for_requests(1)
        assert up.open_connections == 1
    assert up.open_connections == 0
    assert up.connections_closed == 1
    assert threading.active_count() == threads_before
    assert c.read_to_end().startswith(b"HTTP/1.1 200")
    c.close()


async def test_async_use_with_open_connection() -> None:
    threads_before = threading.active_count()
    async with FakeUpstream() as up:
        reader, writer = await asyncio.open_connection("127.0.0.1", up.port)
        writer.write(b"GET /echo/a HTTP/1.1\r\nHost: h\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 200 OK")
        (request,) = await up.wait_for_requests_async(1)
        assert request.path == "/echo/a"
        writer.close()
        await writer.wait_closed()
        assert await up.wait_for_close_async(request.connection_id, TIMEOUT) is not None
    assert up.open_connections == 0
    assert threading.active_count() == threads_before


def test_standalone_process_serves_until_sigterm() -> None:
    cmd = [sys.executable, "-m", "tests.support.fake_upstream", "--port", "0", "--chunks", "5"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:")
        c = RawClient(int(line.rsplit(":", 1)[1]))
        c.request("POST", "/v1/chat/completions", chat_body(stream=True))
        assert content_of(c.read_response()) == wire.synthetic_content(5)
        c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass(frozen=True)
class _Broken:
    async def run(self, ex: Exchange) -> None:
        raise ValueError("behaviour bug")


def test_behaviour_error_is_kept_and_resets_connection(
    upstream: FakeUpstream, client: RawClient, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.enqueue(_Broken())
    client.request("GET", "/")
    with pytest.raises(ConnectionResetError):
        client.read_to_end()
    assert [str(e) for e in upstream.errors] == ["behaviour bug"]
    assert "behaviour bug" in capsys.readouterr().err


def _defined_names(module: Any) -> set[str]:
    """The public names a module defines at its top level (not those it imports)."""
    tree = ast.parse(Path(module.__file__).read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("_")}


def test_the_front_door_exports_every_part() -> None:
    """``fake_upstream`` re-exports both parts, so an import from it works whichever part
    a name lives in; only the server machinery the front door runs on stays inside."""
    from tests.support import fake_behaviours, fake_http, fake_upstream

    exported = fake_upstream.__all__
    assert len(exported) == len(set(exported))
    for part in (fake_http, fake_behaviours):
        for name in part.__all__:
            assert getattr(fake_upstream, name) is getattr(part, name), name
    assert _defined_names(fake_behaviours) == set(fake_behaviours.__all__)
    machinery = {"ServerState", "listen", "close_all", "header_list"}
    assert _defined_names(fake_http) == set(fake_http.__all__) | machinery
    assert _defined_names(fake_upstream) <= set(exported)
