"""Secrets never leak: the gateway's scenarios run with recognisable fake keys, and every
response body and header, log record (DEBUG, all loggers, tracebacks included), the
``/metrics`` text and every exception text is searched for them. Then the same for the
client's errors, reprs and log lines, with keys in headers and in query strings.
"""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import msgspec
import pytest

import aifetch
from aifetch.gateway import GatewayConfig, parse_config
from tests.support import openai_wire as wire
from tests.support.fake_upstream import (
    Behaviour,
    Exchange,
    FakeUpstream,
    RecordedRequest,
    chat_stream,
    echo,
    error_event,
    redirect,
    reset_before_headers,
    reset_mid_stream,
    respond,
    status_storm,
)

from ._inputs_support import fake_upstream, gateway_config, logs_at_debug, running_gateway

UPSTREAM_MIDDLE = "SECRET-" + secrets.token_hex(8)
CALLER_MIDDLE = "SECRET-" + secrets.token_hex(8)
UPSTREAM_KEY = f"sk-upstream-{UPSTREAM_MIDDLE}"
CALLER_KEY = f"gw-caller-{CALLER_MIDDLE}"
NEEDLES = (UPSTREAM_KEY, UPSTREAM_MIDDLE, CALLER_KEY, CALLER_MIDDLE)


class _Everything(logging.Handler):
    """Every record, formatted with its traceback and its extra attributes."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.names: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        for text in (self.format(record), repr(vars(record))):
            self.texts.append(text)
            self.names.append(record.name)

    def of(self, prefix: str) -> list[str]:
        """The texts of records from ``prefix`` and the loggers under it."""
        return [t for t, n in zip(self.texts, self.names, strict=True) if n.startswith(prefix)]


def _leaks(haystack: list[str]) -> list[str]:
    hits = []
    for text in haystack:
        for needle in NEEDLES:
            if needle in text:
                hits.append(
                    f"{needle!r} in {text[:80]!r}...{text[text.find(needle) - 200 :][:300]!r}"
                )
    return hits


def _echo(status: int) -> dict[str, object]:
    """An upstream error body that quotes the key back, as some providers do."""
    message = (
        f"Incorrect API key provided: {UPSTREAM_KEY}. Key {UPSTREAM_KEY[:8]}...{UPSTREAM_KEY[-4:]}"
    )
    return {"error": {"message": message, "type": "invalid_request_error", "code": "x"}}


@pytest.fixture(scope="module")
def refused() -> Iterator[int]:
    """A port that refuses connections: bound and never listening, and while the socket is
    held no other process (a parallel test run) can take the port and answer."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


Scenario = tuple[str, Behaviour | None, dict[str, str], dict[str, object]]


def _scenarios(refused: int) -> list[Scenario]:
    """(name, upstream behaviour, caller headers, body) for each call."""
    good = {"Authorization": f"Bearer {CALLER_KEY}"}
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    calls: list[Scenario] = []

    def add(name: str, behaviour: Behaviour | None, *, stream: bool,
            headers: dict[str, str] = good, model: str = "gpt") -> None:  # fmt: skip
        calls.append((name, behaviour, headers, {"model": model, "stream": stream, **chat}))

    add("plain", None, stream=False)
    add("stream", None, stream=True)
    for status in (400, 401, 403, 429, 500, 503):
        add(f"echo {status}", respond(status, _echo(status)), stream=False)
        add(f"echo {status} stream", respond(status, _echo(status)), stream=True)
    add("429 retry-after", status_storm(429, "0", body=_echo(429)), stream=True)
    add("echo text/plain", respond(502, f"bad key {UPSTREAM_KEY}"), stream=False)
    add(
        "error event before content",
        error_event(before_content=True, message=f"key {UPSTREAM_KEY} revoked"),
        stream=True,
    )
    add(
        "error event after content",
        error_event(message=f"key {UPSTREAM_KEY} revoked"),
        stream=True,
    )
    add("reset before headers", reset_before_headers(), stream=True)
    add("reset mid-stream", reset_mid_stream(), stream=True)
    add(
        "redirect with key",
        redirect(302, f"http://127.0.0.1:{refused}/v1?key={UPSTREAM_KEY}"),
        stream=False,
    )
    add("connect failure", None, stream=False, model="dead")
    add("connect failure stream", None, stream=True, model="dead")
    add("wrong caller key", None, stream=False, headers={"Authorization": f"Bearer {CALLER_KEY}x"})
    add("caller key as api-key", None, stream=True, headers={"api-key": CALLER_KEY})
    add("upstream key as caller key", None, stream=False,
        headers={"Authorization": f"Bearer {UPSTREAM_KEY}"})  # fmt: skip
    add("no key", None, stream=False, headers={})
    add("not allowed model", None, stream=False, model="private")
    return calls


def test_gateway_never_shows_a_key(fake: FakeUpstream, refused: int) -> None:
    dead = f"http://127.0.0.1:{refused}"
    config = gateway_config(
        fake.url,
        UPSTREAM_KEY,
        dead_url=dead,
        callers=[{"name": "app", "key": CALLER_KEY, "models": ["gpt", "dead"]}],
        pipes=[{"use": "aifetch.gateway:log_calls", "options": {"level": "DEBUG"}}],
    )
    seen: list[str] = []
    statuses: dict[str, int] = {}
    sent: list[RecordedRequest] = []
    with logs_at_debug(_Everything()) as logs, running_gateway(config) as gateway:
        for name, behaviour, headers, body in _scenarios(refused):
            if behaviour is not None:
                fake.enqueue(behaviour)
            with httpx.stream(
                "POST", gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=10
            ) as response:
                data = b"".join(response.iter_raw())
            statuses[name] = response.status_code
            seen.append(f"{name} {response.status_code} {response.headers!r}")
            seen.append(f"{name}: " + data.decode("utf-8", "replace"))
            # Each scripted behaviour answered this call and no other.
            assert fake._state.queue == [] or behaviour is None, name
            sent.extend(fake.requests)
            fake.reset()
        for path in ("/metrics", "/healthz", "/v1/models"):
            response = httpx.get(gateway.url + path, headers={"api-key": CALLER_KEY})
            seen.append(f"{response.headers!r} {response.text}")
    seen.extend(logs.texts)
    seen.extend(repr(e) for e in fake.errors)
    leaks = _leaks(seen)
    assert leaks == [], "\n".join(leaks)
    # The scenarios did run: successes, refusals and upstream failures, and were logged.
    assert statuses["plain"] == statuses["stream"] == 200
    assert statuses["wrong caller key"] == statuses["no key"] == 401
    assert statuses["not allowed model"] == 403
    assert statuses["echo 401"] == 502
    assert statuses["echo 429"] == 429
    assert statuses["connect failure"] == 502
    assert any("aifetch.gateway.access" in text for text in logs.texts)
    # The caller's key never travels upstream either.
    assert sent
    for request in sent:
        wire = repr(request.headers) + request.body.decode("utf-8", "replace")
        assert CALLER_KEY not in wire
        assert CALLER_MIDDLE not in wire
        assert request.header("authorization") == f"Bearer {UPSTREAM_KEY}"


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with fake_upstream() as upstream:
        yield upstream


# --- the client ----------------------------------------------------------------------------

_HEADER_STYLES = [
    {"Authorization": f"Bearer {UPSTREAM_KEY}"},
    {"api-key": UPSTREAM_KEY},
    {"x-api-key": UPSTREAM_KEY},
]
_QUERY_STYLES = ["key", "api_key", "token"]


def _client_texts(err: BaseException) -> list[str]:
    texts = [str(err), repr(err)]
    for attr in ("request", "response", "message"):
        value = getattr(err, attr, None)
        if value is not None:
            texts.append(repr(value))
            texts.append(str(value))
    request = getattr(err, "request", None)
    if request is not None:
        texts.append(repr(request.headers))
    response = getattr(err, "response", None)
    if response is not None:
        texts.append(repr(response.headers))
    return texts


async def _drain(response: aifetch.AsyncResponse) -> None:
    async for _ in response.events():
        pass


def _client_calls(base: str, fake: FakeUpstream) -> Iterator[tuple[str, dict[str, str]]]:
    for headers in _HEADER_STYLES:
        for query in _QUERY_STYLES:
            yield f"{base}/v1/chat/completions?{query}={UPSTREAM_KEY}&x=1", headers


def test_sync_client_errors_and_reprs_never_show_a_key(fake: FakeUpstream, refused: int) -> None:
    seen: list[str] = []
    dead = f"http://127.0.0.1:{refused}"
    with (
        logs_at_debug(_Everything()) as logs,
        aifetch.Client(
            pipes=[aifetch.pipes.log(level=logging.DEBUG)], timeout=aifetch.Timeout(first_byte=0.5)
        ) as client,
    ):
        for url, headers in _client_calls(fake.url, fake):
            for behaviour in (respond(401, _echo(401)), respond(500, f"no {UPSTREAM_KEY}")):
                fake.enqueue(behaviour)
                with pytest.raises(aifetch.HTTPError) as info:
                    client.fetch(url, method="POST", headers=headers, json={"a": 1})
                seen.extend(_client_texts(info.value))
            with pytest.raises(aifetch.NetworkError) as net:
                client.fetch(url.replace(fake.url, dead), headers=headers)
            seen.extend(_client_texts(net.value))
            fake.enqueue(reset_before_headers())
            with pytest.raises(aifetch.NetworkError) as reset:
                client.fetch(url, headers=headers)
            seen.extend(_client_texts(reset.value))
            request = aifetch.Request(url, headers=headers)
            seen.extend([repr(request), repr(request.headers), repr(aifetch.Headers(headers))])
            response = client.fetch(url, headers=headers, throw_http_errors=False)
            seen.extend([repr(response), repr(response.headers)])
            response.close()
    seen.extend(logs.of("aifetch"))
    leaks = _leaks(seen)
    assert leaks == [], "\n".join(leaks)
    assert len(logs.texts) > 0


async def test_async_client_errors_and_reprs_never_show_a_key(fake: FakeUpstream) -> None:
    seen: list[str] = []
    with logs_at_debug(_Everything()) as logs:
        async with aifetch.AsyncClient(
            pipes=[aifetch.pipes.log(level=logging.DEBUG)], timeout=aifetch.Timeout(first_byte=0.5)
        ) as client:
            for url, headers in _client_calls(fake.url, fake):
                fake.enqueue(respond(429, _echo(429), headers={"Retry-After": "1"}))
                with pytest.raises(aifetch.RateLimitError) as info:
                    await client.fetch(url, method="POST", headers=headers, json={"a": 1})
                seen.extend(_client_texts(info.value))
                fake.enqueue(chat_stream(delay=2))
                response = await client.fetch(
                    url, headers=headers, timeout=aifetch.Timeout(idle=0.2)
                )
                with pytest.raises(aifetch.TimeoutError) as late:
                    await _drain(response)
                seen.extend(_client_texts(late.value))
                fake.enqueue(respond(200, b"{not json", {"content-type": "application/json"}))
                response = await client.fetch(url, headers=headers)
                with pytest.raises(ValueError, match="not valid JSON") as bad:
                    await response.json()
                seen.extend([*_client_texts(bad.value), repr(response)])
    seen.extend(logs.of("aifetch"))
    leaks = _leaks(seen)
    assert leaks == [], "\n".join(leaks)


# --- 2xx answers: every byte a caller receives -----------------------------------------------

PATH_SECRET = "tenant/secret/" + secrets.token_hex(6)  # JSON encoders may write "\/" for "/"


@dataclass(frozen=True, slots=True)
class _EchoingStream:
    """A 200 stream whose content quotes the request's headers back, once in the first
    content event (held before the commit point) and once later (relayed), sent in two
    reads cut ``offset`` bytes into the chosen occurrence of the key."""

    occurrence: int
    offset: int

    async def run(self, ex: Exchange) -> None:
        quoted = repr(ex.request.headers)
        escaped = PATH_SECRET.replace("/", "\\/")
        events = [
            wire.sse_event(wire.chat_chunk({"role": "assistant", "content": ""})),
            wire.sse_event(wire.chat_chunk({"content": f"you sent {quoted}"})),
            wire.sse_event(wire.chat_chunk({"content": " and again "})),
            wire.sse_event(wire.chat_chunk({"content": f"{quoted}"}))
            + b'data: {"escaped": "'
            + escaped.encode()
            + b'"}\n\n',
            wire.sse_event(wire.chat_chunk({}, finish_reason="stop")),
            wire.SSE_DONE,
        ]
        data = b"".join(events)
        first = data.find(UPSTREAM_KEY.encode())
        at = data.find(UPSTREAM_KEY.encode(), first + 1) if self.occurrence else first
        cut = at + self.offset
        await ex.start_stream()
        await ex.send_chunks(data[:cut])
        await ex.sleep(0.005)
        await ex.send_chunks(data[cut:])
        await ex.end_stream()


def _echo_config(fake: FakeUpstream) -> GatewayConfig:
    config = gateway_config(fake.url, UPSTREAM_KEY)
    raw = msgspec.to_builtins(config)
    raw["upstreams"]["fake"]["headers"] = {"x-tenant-path": PATH_SECRET}
    return parse_config(raw)


@pytest.mark.parametrize("occurrence", [0, 1], ids=["held", "relayed"])
def test_no_secret_in_a_streamed_answer_at_any_read_boundary(
    fake: FakeUpstream, occurrence: int
) -> None:
    with running_gateway(_echo_config(fake)) as gateway:
        for offset in range(-1, len(UPSTREAM_KEY) + 2):
            fake.enqueue(_EchoingStream(occurrence, offset))
            status, _, data = _post(gateway.url, stream=True)
            assert status == 200, offset
            assert _leaks([data.decode()]) == [], offset
            assert PATH_SECRET.encode() not in data
            assert PATH_SECRET.replace("/", "\\/").encode() not in data
            assert data.count(b"[redacted]") >= 3  # both quotes, the escaped header value
            assert data.endswith(b"data: [DONE]\n\n")


def test_no_secret_in_a_plain_answer(fake: FakeUpstream) -> None:
    with running_gateway(_echo_config(fake)) as gateway:
        fake.enqueue(echo())
        status, _, data = _post(gateway.url, stream=False)
    assert status == 200
    assert _leaks([data.decode()]) == []
    assert PATH_SECRET.encode() not in data
    echoed = msgspec.json.decode(data)
    assert ["authorization", "Bearer [redacted]"] in [[n.lower(), v] for n, v in echoed["headers"]]


MAX_ERROR_BODY = 256 * 1024


@pytest.mark.parametrize("inside", [4, 8, 20, len(UPSTREAM_KEY) - 1])
def test_a_long_error_body_is_scrubbed_before_it_is_cut(fake: FakeUpstream, inside: int) -> None:
    # The key straddles the 256 KiB cut: ``inside`` of its bytes before it.
    body = b"x" * (MAX_ERROR_BODY - inside) + UPSTREAM_KEY.encode() + b"y" * 100
    with running_gateway(gateway_config(fake.url, UPSTREAM_KEY)) as gateway:
        fake.enqueue(respond(500, body, {"content-type": "text/plain"}))
        status, _, data = _post(gateway.url, stream=False)
    assert status == 500
    for n in range(4, len(UPSTREAM_KEY) + 1):
        assert UPSTREAM_KEY[:n].encode() not in data, n


def _post(url: str, *, stream: bool) -> tuple[int, httpx.Headers, bytes]:
    body = {"model": "gpt", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=10) as response:
        return response.status_code, response.headers, b"".join(response.iter_raw())
