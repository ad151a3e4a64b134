"""Upstream faults and hostile input: the commit rule, fallback, retries, timeouts,
heartbeats, disconnects, limits, keys, and no route to any other host."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable

import httpx
import msgspec

from aifetch.gateway import GatewayConfig
from tests.support.fake_upstream import (
    FakeUpstream,
    chat_stream,
    endless_stream,
    error_event,
    reset_before_headers,
    reset_mid_stream,
    respond,
    slow_first_byte,
    stall,
    status_storm,
)

from .conftest import RunningGateway, config_for
from .helpers import chat, post_raw

Serve = Callable[[GatewayConfig], RunningGateway]

SECRET = "sk-upstream-secret-1234"


def two_targets(fake: FakeUpstream, attempts: int = 1, **upstream: object) -> GatewayConfig:
    """Model ``gpt``: first target model ``first``, fallback ``second``, same fake upstream."""
    config = config_for(fake.url)
    raw = msgspec.to_builtins(config)
    raw["upstreams"]["fake"].update(upstream)
    raw["models"]["gpt"] = {
        "targets": [
            {"upstream": "fake", "model": "first"},
            {"upstream": "fake", "model": "second"},
        ],
        "retry": {"attempts": attempts, "backoff": 0.01},
    }
    return msgspec.convert(raw, GatewayConfig)


def content_of(data: bytes) -> str:
    """The concatenated ``delta.content`` of a relayed chat stream."""
    text = ""
    for block in events_of(data):
        if block.startswith(b"data: {"):
            for choice in msgspec.json.decode(block[6:])["choices"]:
                text += choice["delta"].get("content") or ""
    return text


def events_of(data: bytes) -> list[bytes]:
    return [block for block in data.split(b"\n\n") if block]


def test_reset_before_headers_falls_back(fake: FakeUpstream, serve: Serve) -> None:
    gateway = serve(two_targets(fake))
    fake.enqueue(reset_before_headers())
    status, _, data = post_raw(gateway.url, chat(stream=False))
    assert status == 200
    assert msgspec.json.decode(data)["choices"][0]["message"]["content"] == "Hello from second"
    assert [r.json()["model"] for r in fake.requests] == ["first", "second"]
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'aifetch_gateway_fallbacks_total{model="gpt"} 1.0' in metrics


def test_all_targets_unreachable_is_502(fake: FakeUpstream, serve: Serve) -> None:
    gateway = serve(two_targets(fake))
    fake.enqueue(reset_before_headers(), times=2)
    status, _, data = post_raw(gateway.url, chat(stream=True))
    assert status == 502
    error = msgspec.json.decode(data)["error"]
    assert error["code"] == "upstream_unreachable"
    assert "fake" in error["message"]


def test_429_with_retry_after_is_retried(fake: FakeUpstream, serve: Serve) -> None:
    gateway = serve(two_targets(fake, attempts=2))
    fake.enqueue(status_storm(429, retry_after="0.2"))
    started = time.monotonic()
    status, _, data = post_raw(gateway.url, chat(stream=True))
    assert status == 200
    assert data.endswith(b"data: [DONE]\n\n")
    assert time.monotonic() - started >= 0.2  # the server-given wait was honoured
    assert [r.json()["model"] for r in fake.requests] == ["first", "first"]
    assert (
        'aifetch_gateway_upstream_retries_total{model="gpt",upstream="fake"} 1.0'
        in httpx.get(gateway.url + "/metrics").text
    )


def test_429_beyond_max_server_wait_is_passed_on(fake: FakeUpstream, serve: Serve) -> None:
    gateway = serve(config_for(fake.url))
    fake.enqueue(status_storm(429, retry_after="3600"))
    status, headers, data = post_raw(gateway.url, chat(stream=True))
    assert status == 429
    assert headers["retry-after"] == "3600"
    assert "error" in msgspec.json.decode(data)


def test_error_event_before_content_falls_back(fake: FakeUpstream, serve: Serve) -> None:
    gateway = serve(two_targets(fake))
    fake.enqueue(error_event(before_content=True))
    status, _, data = post_raw(gateway.url, chat(stream=True))
    assert status == 200
    assert content_of(data) == "Hello from second"
    assert b'"error"' not in data
    assert data.endswith(b"data: [DONE]\n\n")
    assert [r.json()["model"] for r in fake.requests] == ["first", "second"]


def test_error_event_after_content_ends_with_error_event(fake: FakeUpstream, serve: Serve) -> None:
    gateway = serve(config_for(fake.url))
    fake.enqueue(error_event(before_content=False, message="model overloaded"))
    status, _, data = post_raw(gateway.url, chat(stream=True))
    assert status == 200
    last = events_of(data)[-1]
    assert last.startswith(b"event: error\ndata: ")
    assert msgspec.json.decode(last.split(b"data: ", 1)[1])["error"]["message"].endswith(
        "model overloaded"
    )
    assert b"[DONE]" not in data


def test_reset_mid_stream_ends_with_error_event_and_no_done(
    fake: FakeUpstream, serve: Serve
) -> None:
    gateway = serve(config_for(fake.url))
    fake.enqueue(reset_mid_stream(after_events=3))
    status, _, data = post_raw(gateway.url, chat(stream=True))
    assert status == 200
    blocks = events_of(data)
    assert len(blocks) == 4  # three upstream events, then the gateway's error event
    error = msgspec.json.decode(blocks[-1].split(b"data: ", 1)[1])["error"]
    assert error["code"] == "upstream_reset"
    assert b"[DONE]" not in data


def test_stall_mid_stream_hits_idle_timeout(fake: FakeUpstream, serve: Serve) -> None:
    config = config_for(fake.url)
    raw = msgspec.to_builtins(config)
    raw["upstreams"]["fake"]["timeout"]["idle"] = 0.3
    gateway = serve(msgspec.convert(raw, GatewayConfig))
    fake.enqueue(stall(after_events=2))
    started = time.monotonic()
    status, _, data = post_raw(gateway.url, chat(stream=True))
    assert status == 200
    assert time.monotonic() - started < 3
    error = msgspec.json.decode(events_of(data)[-1].split(b"data: ", 1)[1])["error"]
    assert error["code"] == "upstream_timeout"
    assert "idle" in error["message"]
    assert b"[DONE]" not in data


def test_slow_first_token_gets_heartbeats(fake: FakeUpstream, serve: Serve) -> None:
    gateway = serve(config_for(fake.url, server={"heartbeat": 0.1, "shutdown_grace": 2}))
    fake.enqueue(slow_first_byte(0.6, chat_stream(content="late")))
    status, headers, data = post_raw(gateway.url, chat(stream=True))
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    first_data = data.index(b"data: ")
    assert data[:first_data].count(b": ping\n\n") >= 3
    assert data.endswith(b"data: [DONE]\n\n")


def test_a_waiting_stream_is_never_quiet_for_longer_than_the_heartbeat(
    fake: FakeUpstream, serve: Serve
) -> None:
    heartbeat = 0.2
    gateway = serve(config_for(fake.url, server={"heartbeat": heartbeat, "shutdown_grace": 2}))
    fake.enqueue(slow_first_byte(1.2, chat_stream(content="late")))
    arrivals, received = [time.monotonic()], b""
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=chat(stream=True), timeout=5
    ) as response:
        for piece in response.iter_raw():
            received += piece
            if b"data: " in received:
                break
            arrivals.append(time.monotonic())
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(gaps) >= 5, received
    # The sweep's period (a quarter of the heartbeat) is the slack; a loaded machine's
    # scheduling gets as much again. Sweeping once per heartbeat left gaps of twice it.
    assert max(gaps) < heartbeat * 1.5, gaps


def test_heartbeats_between_chunks(fake: FakeUpstream, serve: Serve) -> None:
    gateway = serve(config_for(fake.url, server={"heartbeat": 0.05, "shutdown_grace": 2}))
    fake.enqueue(chat_stream(content="a b c", n_chunks=3, delay=0.2))
    _, _, data = post_raw(gateway.url, chat(stream=True))
    first_data = data.index(b"data: ")
    assert data[first_data:].count(b": ping\n\n") >= 3
    assert data.endswith(b"data: [DONE]\n\n")


def _open_stream(gateway: RunningGateway, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    received = b""
    while b"data: " not in received:
        received += sock.recv(65536)
    return sock


def test_caller_disconnect_closes_upstream_connection(
    fake: FakeUpstream, gateway: RunningGateway
) -> None:
    fake.enqueue(endless_stream(0.02))
    sock = _open_stream(gateway, msgspec.json.encode(chat(stream=True)))
    upstream_request = fake.wait_for_requests(1)[0]
    sock.close()
    closed_by = time.monotonic()
    seen = fake.wait_for_close(upstream_request.connection_id, timeout=1.0)
    assert seen is not None, "the upstream connection was not closed within 1 s"
    assert seen - closed_by < 1.0


def test_caller_disconnect_with_drain_reads_to_the_end(fake: FakeUpstream, serve: Serve) -> None:
    config = config_for(fake.url)
    raw = msgspec.to_builtins(config)
    raw["models"]["gpt"]["on_disconnect"] = "drain"
    gateway = serve(msgspec.convert(raw, GatewayConfig))
    fake.enqueue(chat_stream(content="one two three four", n_chunks=4, delay=0.1))
    sock = _open_stream(gateway, msgspec.json.encode(chat(stream=True)))
    sock.close()
    # Drained: the usage chunk at the end of the upstream stream is still counted.
    deadline = time.monotonic() + 5
    while 'kind="completion",model="gpt"' not in httpx.get(gateway.url + "/metrics").text:
        assert time.monotonic() < deadline, "the drained stream's usage was not recorded"
        time.sleep(0.05)


def test_oversized_body_is_413(fake: FakeUpstream, serve: Serve) -> None:
    gateway = serve(config_for(fake.url, limits={"max_body_bytes": 1000}))
    body = chat(stream=False, padding="x" * 2000)
    status, _, data = post_raw(gateway.url, body)
    assert status == 413
    assert msgspec.json.decode(data)["error"]["code"] == "request_too_large"
    assert fake.requests == []


def test_malformed_bodies_are_400(gateway: RunningGateway, fake: FakeUpstream) -> None:
    url = gateway.url + "/v1/chat/completions"
    cases = {
        b"{not json": "invalid_json",
        b"[1, 2]": None,
        b'{"messages": []}': "missing_required_parameter",
        b'{"model": 5}': None,
        b'{"model": "gpt", "stream": "yes"}': None,
    }
    for body, code in cases.items():
        response = httpx.post(url, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        if code is not None:
            assert error["code"] == code
    assert fake.requests == []


def test_wrong_method_and_unknown_path(gateway: RunningGateway) -> None:
    assert httpx.get(gateway.url + "/v1/chat/completions").status_code == 405
    response = httpx.post(gateway.url + "/v1/../admin", json={})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"


def test_no_field_or_header_reaches_another_host(
    fake: FakeUpstream, gateway: RunningGateway
) -> None:
    with FakeUpstream() as evil:
        hostile_headers = {
            "Host": f"127.0.0.1:{evil.port}",
            "X-Forwarded-Host": f"127.0.0.1:{evil.port}",
            "Forwarded": f"host=127.0.0.1:{evil.port}",
            "X-Upstream-Url": evil.url,
            "OpenAI-Base-URL": evil.url,
        }
        body = chat(stream=False, base_url=evil.url, api_base=evil.url, url=evil.url + "/v1")
        status, _, _ = post_raw(gateway.url, body, headers=hostile_headers)
        assert status == 200
        status, _, _ = post_raw(gateway.url, chat(model=evil.url + "/v1", stream=False))
        assert status == 404
        # An absolute-form request target names a host too.
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
            payload = msgspec.json.encode(chat(stream=False))
            sock.sendall(
                f"POST {evil.url}/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert evil.requests == []
        assert evil.connections_opened == 0
    assert all(r.path.startswith("/v1/") for r in fake.requests)
    for request in fake.requests:
        names = {n.lower() for n, _ in request.headers}
        assert not names & {"x-forwarded-host", "forwarded", "x-upstream-url", "openai-base-url"}


def test_upstream_key_never_reaches_the_caller(fake: FakeUpstream, gateway: RunningGateway) -> None:
    leaky = {
        "error": {
            "message": f"Incorrect API key provided: {SECRET}",
            "type": "invalid_request_error",
        }
    }
    fake.enqueue(respond(401, leaky))
    status, _, data = post_raw(gateway.url, chat(stream=False))
    assert status == 502  # the gateway's own credentials failed, not the caller's
    assert SECRET.encode() not in data
    assert b"rejected the gateway's credentials" in data
    fake.enqueue(respond(500, {"error": {"message": f"boom {SECRET}"}}))
    status, _, data = post_raw(gateway.url, chat(stream=True))
    assert status == 500
    assert SECRET.encode() not in data
    assert b"[redacted]" in data
    assert SECRET not in httpx.get(gateway.url + "/metrics").text


def test_caller_disconnect_cancels_a_slow_non_stream_call(
    fake: FakeUpstream, gateway: RunningGateway
) -> None:
    fake.enqueue(slow_first_byte(30, respond(200, {"never": "sent"})))
    body = msgspec.json.encode(chat(stream=False))
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    upstream_request = fake.wait_for_requests(1)[0]
    sock.close()
    closed_by = time.monotonic()
    seen = fake.wait_for_close(upstream_request.connection_id, timeout=2.0)
    assert seen is not None, "the upstream call outlived its caller"
    assert seen - closed_by < 1.0


def test_endless_preamble_without_content_is_bounded(
    fake: FakeUpstream, gateway: RunningGateway
) -> None:
    fake.enqueue(chat_stream([b": keep-alive\n\n"] * 100_000))
    status, _, data = post_raw(gateway.url, chat(stream=True))
    assert status == 502
    assert msgspec.json.decode(data)["error"]["code"] == "upstream_no_content"
