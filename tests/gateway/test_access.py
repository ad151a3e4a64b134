"""Who may cost the gateway what: the key is checked before any body is read, the bodies
held at once are bounded, /metrics is for the operator only, and pipes may map aliases."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from contextlib import ExitStack

import httpx
import msgspec
import pytest

from aifetch.gateway import Call, GatewayConfig, Next, Reply, create_app, parse_config
from tests.support.fake_upstream import FakeUpstream, endless_stream

from .conftest import RunningGateway, config_for
from .helpers import chat, post_raw

Serve = Callable[[GatewayConfig], RunningGateway]
KEY = "gw-access-key-0123456789"
CALLERS = [{"name": "app", "key": KEY, "models": ["gpt"]}, {"name": "ops", "key": KEY + "-ops"}]


def _head(port: int, lines: list[str], body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return sock


def _read_answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or (b"content-length" in data.lower() and not _complete(data)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


def test_a_keyless_upload_is_refused_before_its_body_is_read(
    fake: FakeUpstream, serve: Serve
) -> None:
    gateway = serve(config_for(fake.url, callers=CALLERS))
    size = 4 * 1024 * 1024
    sock = _head(
        gateway.port,
        [
            "POST /v1/chat/completions HTTP/1.1",
            "Host: x",
            "Content-Type: application/json",
            f"Content-Length: {size}",
            "Expect: 100-continue",
        ],
    )
    answer = _read_answer(sock)
    sock.close()
    # No "100 Continue" invites the body: the 401 comes first, and nothing is read.
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:80]
    assert b"100 Continue" not in answer
    assert msgspec.json.decode(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == (
        "missing_api_key"
    )
    assert fake.requests == []


def test_bodies_held_at_once_are_bounded(fake: FakeUpstream, serve: Serve) -> None:
    mib = 1024 * 1024
    limits = {"max_body_bytes": mib, "max_buffered_body_bytes": 2 * mib}
    gateway = serve(config_for(fake.url, callers=CALLERS, limits=limits))
    head = [
        "POST /v1/chat/completions HTTP/1.1",
        "Host: x",
        "Content-Type: application/json",
        f"Authorization: Bearer {KEY}",
        f"Content-Length: {mib}",
    ]
    with ExitStack() as stack:
        # Two uploads that send a little and stall hold the whole budget between them.
        for _ in range(2):
            stack.callback(_head(gateway.port, head, b'{"model": "gpt", "x": "').close)
        time.sleep(0.3)
        third = _head(gateway.port, head, b"{")
        stack.callback(third.close)
        answer = _read_answer(third)
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:80]
        assert b"retry-after: 1" in answer.lower()
        assert b'"server_busy"' in answer
    # Once they are gone, the budget is free again.
    deadline = time.monotonic() + 5
    while True:
        status, _, data = post_raw(
            gateway.url, chat(stream=False), headers={"Authorization": f"Bearer {KEY}"}
        )
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 200, data


METRICS_KEY = "mk-operator-0123456789"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 200),
        ({"X-Forwarded-For": "198.51.100.7"}, 403),  # a proxy on this machine passing it on
        ({"Forwarded": "for=198.51.100.7"}, 403),
        ({"Authorization": f"Bearer {KEY}"}, 200),  # a caller's key opens nothing extra...
    ],
)
def test_metrics_without_a_key_are_for_this_machine_only(
    fake: FakeUpstream, serve: Serve, headers: dict[str, str], status: int
) -> None:
    gateway = serve(config_for(fake.url, callers=CALLERS))
    answer = httpx.get(gateway.url + "/metrics", headers=headers)
    assert answer.status_code == status
    if status == 403:
        assert answer.json()["error"]["code"] == "metrics_forbidden"


async def test_metrics_from_another_machine_need_the_metrics_key(fake: FakeUpstream) -> None:
    for key, expected in ((None, 403), (METRICS_KEY, 401)):
        server = {"metrics_key": key} if key else {}
        app = create_app(config_for(fake.url, callers=CALLERS, server=server))
        remote = httpx.ASGITransport(app=app, client=("203.0.113.9", 4242))
        async with httpx.AsyncClient(transport=remote, base_url="http://gw") as client:
            caller = await client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"})
            assert caller.status_code == expected  # ...and never the metrics
            if key:
                bare = await client.get("/metrics")
                assert bare.status_code == 401
                ok = await client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
                assert ok.status_code == 200
                assert b"aifetch_gateway_requests" in ok.content
                assert key.encode() not in ok.content
        await app.aclose()


async def aliases(call: Call, next: Next) -> Reply:
    """The README's alias pipe: a name that is not configured, mapped onto one that is."""
    if call.model == "default":
        call.model = "gpt"
    return await next(call)


@pytest.fixture
def alias_gateway(fake: FakeUpstream, serve: Serve) -> RunningGateway:
    return serve(
        config_for(fake.url, callers=CALLERS, pipes=[{"use": "tests.gateway.test_access:aliases"}])
    )


@pytest.mark.parametrize("stream", [False, True])
def test_pipes_may_map_names_that_are_not_configured(
    alias_gateway: RunningGateway, fake: FakeUpstream, stream: bool
) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    status, _, data = post_raw(alias_gateway.url, chat("default", stream=stream), headers=auth)
    assert status == 200, data
    assert fake.requests[-1].json()["model"] == "fake-model"
    # A name still unknown after the pipes is refused, as OpenAI refuses it.
    status, _, data = post_raw(alias_gateway.url, chat("nope", stream=stream), headers=auth)
    assert status == 404
    assert msgspec.json.decode(data)["error"]["code"] == "model_not_found"
    # The caller's own list applies to the name the call ends on.
    status, _, data = post_raw(alias_gateway.url, chat("mock-gpt", stream=stream), headers=auth)
    assert status == 403
    metrics = httpx.get(alias_gateway.url + "/metrics").text
    assert 'model="nope"' not in metrics  # an unknown name never becomes a label


def _open_stream(port: int, key: str) -> socket.socket:
    """A stream call that stays open (the fake upstream streams until the caller leaves),
    read up to its first content."""
    body = msgspec.json.encode(chat(stream=True))
    sock = _head(
        port,
        [
            "POST /v1/chat/completions HTTP/1.1",
            "Host: x",
            "Content-Type: application/json",
            f"Authorization: Bearer {key}",
            f"Content-Length: {len(body)}",
        ],
        body,
    )
    seen = b""
    while b" tok" not in seen:
        chunk = sock.recv(65536)
        assert chunk, seen
        seen += chunk
    return sock


def _share_config(fake: FakeUpstream, **upstream: object) -> GatewayConfig:
    config = config_for(fake.url, callers=CALLERS)
    raw = msgspec.to_builtins(config)
    raw["upstreams"]["fake"].update(upstream)
    return parse_config(raw)


def test_one_callers_streams_leave_room_for_another(fake: FakeUpstream, serve: Serve) -> None:
    # Four connections; with two callers, each may hold two. "app" asks for four long
    # streams: two run and two wait; "ops" still gets its call answered at once.
    gateway = serve(_share_config(fake, max_connections=4, timeout={"pool": 5, "first_byte": 5}))
    for _ in range(2):  # the two that run; the others, once they run, are answered plainly
        fake.enqueue(endless_stream(0.05), path="/v1/chat/completions")
    with ExitStack() as stack:
        for _ in range(2):
            stack.callback(_open_stream(gateway.port, KEY).close)
        waiting = []
        for _ in range(2):  # over the share: these wait for a slot
            sock = _head(gateway.port, _stream_head(KEY), msgspec.json.encode(chat(stream=True)))
            stack.callback(sock.close)
            waiting.append(sock)
        time.sleep(0.2)
        started = time.monotonic()
        status, _, data = post_raw(
            gateway.url, chat(stream=False), headers={"Authorization": f"Bearer {KEY}-ops"}
        )
        assert status == 200, data
        assert time.monotonic() - started < 1.0
    # Every slot comes back once the callers have gone.
    upstream = gateway.server.app.upstreams["fake"]  # type: ignore[union-attr]
    deadline = time.monotonic() + 5
    while upstream.slots.busy and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.slots.busy == 0


def test_waiting_for_a_connection_is_its_own_phase(fake: FakeUpstream, serve: Serve) -> None:
    gateway = serve(_share_config(fake, max_connections=1, timeout={"pool": 0.3}))
    fake.enqueue(endless_stream(0.05), path="/v1/chat/completions")
    with ExitStack() as stack:
        stack.callback(_open_stream(gateway.port, KEY).close)
        started = time.monotonic()
        status, headers, data = post_raw(
            gateway.url, chat(stream=False), headers={"Authorization": f"Bearer {KEY}"}
        )
        waited = time.monotonic() - started
    assert status == 503, data
    assert msgspec.json.decode(data)["error"]["code"] == "upstream_busy"
    assert headers["retry-after"] == "1"
    assert 0.25 <= waited < 2.0


def _stream_head(key: str) -> list[str]:
    length = len(msgspec.json.encode(chat(stream=True)))
    return [
        "POST /v1/chat/completions HTTP/1.1",
        "Host: x",
        "Content-Type: application/json",
        f"Authorization: Bearer {key}",
        f"Content-Length: {length}",
    ]
