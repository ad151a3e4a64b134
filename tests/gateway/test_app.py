"""The ASGI app's edges: Server-Timing, CORS, health, metrics, access log, pipes,
mounting under a prefix, the loopback rule and graceful shutdown."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

from aifetch.gateway import Call, GatewayConfig, GatewayError, Next, Reply, create_app
from aifetch.sse import ServerSentEvent
from tests.support.fake_upstream import FakeUpstream, endless_stream

from .conftest import RunningGateway, config_for
from .helpers import chat, post_raw

Serve = Callable[[GatewayConfig], RunningGateway]


def test_server_timing_on_every_response(gateway: RunningGateway) -> None:
    responses = [
        httpx.post(gateway.url + "/v1/chat/completions", json=chat(stream=False)),
        httpx.get(gateway.url + "/v1/models"),
        httpx.get(gateway.url + "/nowhere"),
        httpx.post(gateway.url + "/v1/chat/completions", content=b"{"),
    ]
    status, headers, _ = post_raw(gateway.url, chat(stream=True))
    assert status == 200
    for h in [r.headers for r in responses] + [headers]:
        timing = h["server-timing"]
        assert timing.startswith("gateway;dur=")
        assert ", upstream;dur=" in timing


def test_stream_headers(gateway: RunningGateway) -> None:
    _, headers, _ = post_raw(gateway.url, chat(stream=True))
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in headers


def test_healthz_and_metrics(gateway: RunningGateway) -> None:
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    post_raw(gateway.url, chat(stream=True))
    metrics = httpx.get(gateway.url + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'aifetch_gateway_requests_total{model="gpt",status="200"} 1.0' in text
    assert 'aifetch_gateway_time_to_first_token_seconds_count{model="gpt"} 1.0' in text
    assert 'aifetch_gateway_added_latency_seconds_count{model="gpt"} 1.0' in text
    assert 'aifetch_gateway_inter_chunk_gap_seconds_count{model="gpt"}' in text


@pytest.fixture
def cors_gateway(fake: FakeUpstream, serve: Serve) -> RunningGateway:
    return serve(config_for(fake.url, cors={"allow_origins": ["https://app.example"]}))


def test_cors_preflight_and_actual_request(cors_gateway: RunningGateway) -> None:
    url = cors_gateway.url + "/v1/chat/completions"
    preflight = httpx.options(
        url,
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    actual = httpx.post(url, json=chat(stream=False), headers={"Origin": "https://app.example"})
    assert actual.headers["access-control-allow-origin"] == "https://app.example"
    other = httpx.post(url, json=chat(stream=False), headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    too_much = httpx.options(
        url,
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-something-else",
        },
    )
    assert too_much.status_code == 403


def test_access_log_line_is_json_and_redacted(
    fake: FakeUpstream, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = serve(config_for(fake.url, callers=[{"name": "alice", "key": "gw-secret-key"}]))
    caplog.set_level(logging.INFO, logger="aifetch.gateway.access")
    post_raw(gateway.url, chat(stream=True), headers={"Authorization": "Bearer gw-secret-key"})
    deadline = time.monotonic() + 5
    while not [r for r in caplog.records if r.name == "aifetch.gateway.access"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    line = next(r.getMessage() for r in caplog.records if r.name == "aifetch.gateway.access")
    record = msgspec.json.decode(line)
    assert record["status"] == 200
    assert record["model"] == "gpt"
    assert record["caller"] == "alice"
    assert record["stream"] is True
    assert record["upstream"] == "fake"
    assert record["completion_tokens"] > 0
    assert "gw-secret-key" not in caplog.text
    assert "sk-upstream-secret-1234" not in caplog.text


# --------------------------------------------------------------------------- pipes


async def shout(call: Call, next: Next) -> Reply:
    """A user pipe: adds a system message, and upper-cases streamed content."""
    call.body["messages"].insert(0, {"role": "system", "content": "be loud"})
    reply = await next(call)

    def louder(event: ServerSentEvent) -> ServerSentEvent | None:
        if not event.data.startswith("{"):
            return event
        chunk = msgspec.json.decode(event.data)
        for choice in chunk["choices"]:
            if choice["delta"].get("content"):
                choice["delta"]["content"] = choice["delta"]["content"].upper()
        return ServerSentEvent(data=msgspec.json.encode(chunk).decode())

    reply.on_event(louder)
    return reply


async def gatekeeper(call: Call, next: Next) -> Reply:
    if call.header("x-block") == "yes":
        raise GatewayError(403, "blocked by policy", code="blocked")
    if call.model == "alias":
        call.model = "gpt"
    return await next(call)


def test_pipes_change_request_and_stream(fake: FakeUpstream, serve: Serve) -> None:
    pipes = [
        {"use": "tests.gateway.test_app:gatekeeper"},
        {
            "use": "aifetch.gateway:request_policy",
            "options": {"max_tokens": 50, "deny_params": ["logit_bias"]},
        },
        {"use": "tests.gateway.test_app:shout"},
    ]
    gateway = serve(config_for(fake.url, pipes=pipes))
    status, _, data = post_raw(gateway.url, chat(stream=True, max_tokens=1000))
    assert status == 200
    sent = fake.requests[-1].json()
    assert sent["max_tokens"] == 50
    assert sent["messages"][0] == {"role": "system", "content": "be loud"}
    assert b"HELLO" in data
    assert data.endswith(b"data: [DONE]\n\n")

    status, _, data = post_raw(gateway.url, chat(stream=False, logit_bias={"1": 2}))
    assert status == 400
    assert msgspec.json.decode(data)["error"]["param"] == "logit_bias"

    status, _, data = post_raw(gateway.url, chat(stream=True), headers={"x-block": "yes"})
    assert status == 403
    assert msgspec.json.decode(data)["error"]["code"] == "blocked"


async def second_opinion(call: Call, next: Next) -> Reply:
    """A pipe that makes a call of its own (to another model) before the caller's."""
    probe_body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}]}
    probe = await next(Call(call.route, probe_body, call.caller))
    reply = await next(call)
    words = len(probe.json()["choices"][0]["message"]["content"].split())
    reply.headers.append(("x-probe-words", str(words)))
    return reply


def test_a_pipe_may_build_and_pass_its_own_call(fake: FakeUpstream, serve: Serve) -> None:
    gateway = serve(config_for(fake.url, pipes=[{"use": "tests.gateway.test_app:second_opinion"}]))
    for stream in (False, True):
        status, headers, data = post_raw(gateway.url, chat(stream=stream))
        assert status == 200
        assert int(headers["x-probe-words"]) > 3
        assert data.endswith(b"data: [DONE]\n\n") if stream else b'"choices"' in data
    # The pipe's own call went to the mock model; only the callers' calls reached the fake.
    assert [r.json()["model"] for r in fake.requests] == ["fake-model", "fake-model"]


async def broken_before(call: Call, next: Next) -> Reply:
    raise KeyError("a bug in a pipe")


async def broken_hook(call: Call, next: Next) -> Reply:
    reply = await next(call)

    def hook(event: ServerSentEvent) -> ServerSentEvent | None:
        raise ValueError("a bug in a hook")

    reply.on_event(hook)
    return reply


def test_pipe_bugs_still_give_openai_shaped_errors(
    fake: FakeUpstream, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aifetch.gateway")
    before = serve(config_for(fake.url, pipes=[{"use": "tests.gateway.test_app:broken_before"}]))
    status, _, data = post_raw(before.url, chat(stream=True))
    assert status == 500
    assert msgspec.json.decode(data)["error"]["code"] == "internal_error"
    assert b"a bug" not in data
    during = serve(config_for(fake.url, pipes=[{"use": "tests.gateway.test_app:broken_hook"}]))
    status, _, data = post_raw(during.url, chat(stream=True))
    assert status == 200
    assert data.startswith(b"event: error\n")
    assert b"internal_error" in data
    assert b"[DONE]" not in data
    assert "a bug in a hook" in caplog.text


def test_pipe_load_errors_name_the_entry(fake: FakeUpstream) -> None:
    from aifetch.gateway import ConfigError

    with pytest.raises(
        ConfigError, match=r"pipes\[0\].use: cannot load 'tests.gateway.test_app:missing'"
    ):
        create_app(config_for(fake.url, pipes=[{"use": "tests.gateway.test_app:missing"}]))
    with pytest.raises(ConfigError, match=r"pipes\[0\].options: .*unexpected keyword"):
        create_app(
            config_for(
                fake.url, pipes=[{"use": "aifetch.gateway:request_policy", "options": {"bogus": 1}}]
            )
        )


# --------------------------------------------------------------------------- ASGI edges


async def test_mounted_under_a_prefix_and_loopback_rule() -> None:
    app = create_app(config_for(None))
    transport = httpx.ASGITransport(app=app, root_path="/ai")
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        models = await client.get("/ai/v1/models")
        assert models.status_code == 200
        assert [m["id"] for m in models.json()["data"]] == ["mock-gpt"]
        answer = await client.post("/ai/v1/chat/completions", json=chat("mock-gpt", stream=False))
        assert answer.json()["choices"][0]["message"]["content"].startswith(
            "Hello from the aifetch mock"
        )
    remote = httpx.ASGITransport(app=app, client=("203.0.113.9", 4242))
    async with httpx.AsyncClient(transport=remote, base_url="http://gw") as client:
        refused = await client.post("/v1/chat/completions", json=chat("mock-gpt", stream=False))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "loopback_only"
    await app.aclose()


def test_graceful_shutdown_ends_streams_with_an_error_event(fake: FakeUpstream) -> None:
    config = config_for(fake.url, server={"heartbeat": 0, "shutdown_grace": 0.3})
    gateway = RunningGateway(config)
    gateway.start()
    fake.enqueue(endless_stream(0.02))
    body = msgspec.json.encode(chat(stream=True))
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    received = b""
    while b"data: " not in received:
        received += sock.recv(65536)
    stopper = threading.Thread(target=gateway.stop)
    stopper.start()
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    stopper.join(10)
    assert not stopper.is_alive()
    assert b"event: error" in received
    assert b"shutting_down" in received
    assert b"[DONE]" not in received


def test_new_calls_refused_while_closing(fake: FakeUpstream) -> None:
    async def scenario() -> list[Any]:
        app = create_app(config_for(fake.url))
        app.begin_shutdown(60)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            health = await client.get("/healthz")
            call = await client.post("/v1/chat/completions", json=chat(stream=False))
        await app.aclose()
        return [health.status_code, call.status_code, call.json()["error"]["code"]]

    import asyncio

    assert asyncio.run(scenario()) == [503, 503, "shutting_down"]


def _preflight(url: str, origin: str, headers: str) -> httpx.Response:
    return httpx.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": headers,
        },
    )


# What openai-node asks for in a browser (dangerouslyAllowBrowser), and anthropic-sdk-typescript.
SDK_HEADERS = [
    "authorization, content-type, x-stainless-arch, x-stainless-lang, x-stainless-os, "
    "x-stainless-package-version, x-stainless-retry-count, x-stainless-runtime, "
    "x-stainless-runtime-version, x-stainless-timeout",
    "anthropic-dangerous-direct-browser-access, anthropic-version, content-type, x-api-key, "
    "x-stainless-helper-method, x-stainless-lang",
]


@pytest.mark.parametrize("asked", SDK_HEADERS, ids=["openai-node", "anthropic-ts"])
def test_cors_default_admits_what_the_official_sdks_send(
    cors_gateway: RunningGateway, asked: str
) -> None:
    answer = _preflight(cors_gateway.url + "/v1/chat/completions", "https://app.example", asked)
    assert answer.status_code == 204
    allowed = {h.strip() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert allowed == {h.strip() for h in asked.split(",")}
    exposed = answer.headers["access-control-expose-headers"]
    for header in ("retry-after-ms", "x-ratelimit-remaining-requests", "x-request-id"):
        assert header in exposed


def test_cors_allow_headers_star_and_patterns(fake: FakeUpstream, serve: Serve) -> None:
    url = "/v1/chat/completions"
    star = serve(config_for(fake.url, cors={"allow_origins": ["*"], "allow_headers": ["*"]}))
    assert _preflight(star.url + url, "https://a.example", "x-anything, x-else").status_code == 204
    only = serve(
        config_for(
            fake.url,
            cors={"allow_origins": ["https://a.example"], "allow_headers": ["x-team-*"]},
        )
    )
    assert _preflight(only.url + url, "https://a.example", "x-team-id").status_code == 204
    assert _preflight(only.url + url, "https://a.example", "x-other").status_code == 403
    assert _preflight(only.url + url, "https://a.example", "authorization").status_code == 403
