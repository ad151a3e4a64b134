"""Hostile input against a gateway on loopback: each attempt gets a clear 4xx in OpenAI's
error shape and nothing is forwarded (the fake upstream records no request, and a second
"evil" server that every trick points at sees no connection at all).

The table in docs/RELIABILITY.md (hostile input) lists these cases and the status each gets.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from aifetch.gateway import GatewayError, create_app, parse_config
from aifetch.gateway._auth import Authenticator
from aifetch.gateway._config import CallerConfig
from tests.gateway.conftest import RunningGateway
from tests.support.fake_upstream import FakeUpstream

from ._inputs_support import (
    assert_openai_error,
    fake_upstream,
    gateway_config,
    raw_exchange,
    running_gateway,
)

CALLER_KEY = "gw-hostile-caller-0123456789"
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def evil() -> Iterator[FakeUpstream]:
    with fake_upstream() as server:
        yield server


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with fake_upstream() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream) -> Iterator[RunningGateway]:
    config = gateway_config(
        fake.url,
        "sk-upstream-hostile-key",
        callers=[{"name": "app", "key": CALLER_KEY, "models": ["gpt"]}],
    )
    with running_gateway(config) as running:
        yield running


def _http(
    method: str,
    target: str,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    *,
    auth: bool = True,
    content_type: str | None = "application/json",
) -> bytes:
    """An HTTP/1.1 request written byte for byte (no client library tidies it up)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if auth:
        lines.append(f"Authorization: Bearer {CALLER_KEY}")
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.extend(f"{name}: {value}" for name, value in headers or [])
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _status_and_body(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return status, body


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


def _body(model: str = "gpt", **extra: object) -> bytes:
    return msgspec.json.encode(
        {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    )


def _cases(evil_url: str) -> dict[str, bytes]:
    """name → raw request; every one must be refused."""
    evil_host = evil_url.removeprefix("http://")
    nested = b"[" * 10_000 + b"]" * 10_000
    return {
        "CR/LF in model": _http("POST", CHAT, _body("gpt\r\nX-Injected: 1")),
        "CR/LF model as URL": _http("POST", CHAT, _body(f"gpt\r\nHost: {evil_host}")),
        "model is a URL": _http("POST", CHAT, _body(evil_url + "/v1")),
        "model not allowed for caller": _http("POST", CHAT, _body("private")),
        "model unknown": _http("POST", CHAT, _body("../gpt")),
        "max_tokens huge": _http("POST", CHAT, _body(max_tokens=10**30)),
        "max_tokens 2**40": _http("POST", CHAT, _body(max_tokens=2**40)),
        "max_tokens negative": _http("POST", CHAT, _body(max_tokens=-1)),
        "max_tokens float": _http("POST", CHAT, _body(max_tokens=1.5)),
        "max_tokens string": _http("POST", CHAT, _body(max_tokens="100")),
        "max_completion_tokens huge": _http("POST", CHAT, _body(max_completion_tokens=2**40)),
        "n huge": _http("POST", CHAT, _body(n=10**6)),
        "n zero": _http("POST", CHAT, _body(n=0)),
        "n negative": _http("POST", CHAT, _body(n=-5)),
        "n float": _http("POST", CHAT, _body(n=2.5)),
        "nested 10,000 deep": _http("POST", CHAT, b'{"model": "gpt", "x": ' + nested + b"}"),
        "nested body only": _http("POST", CHAT, nested),
        "non-UTF-8 in model": _http("POST", CHAT, b'{"model": "gp\xfft", "messages": []}'),
        "non-UTF-8 in content": _http(
            "POST", CHAT, b'{"model": "gpt", "messages": [{"role": "user", "content": "\xc0\xaf"}]}'
        ),
        "UTF-16 body": _http("POST", CHAT, _body().decode().encode("utf-16")),
        "form body": _http(
            "POST", CHAT, b"model=gpt&messages=hi", content_type="application/x-www-form-urlencoded"
        ),
        "empty body": _http("POST", CHAT, b""),
        "JSON array body": _http("POST", CHAT, b"[" + _body() + b"]"),
        "no key": _http("POST", CHAT, _body(), auth=False),
        "wrong key in api-key": _http(
            "POST", CHAT, _body(), [("api-key", f"{CALLER_KEY}x")], auth=False
        ),
        "path traversal": _http("POST", "/v1/../v1/chat/completions", _body()),
        "path traversal to admin": _http("POST", "/v1/../admin", _body()),
        "encoded traversal": _http("POST", "/v1/%2e%2e/v1/chat/completions", _body()),
        "encoded slash": _http("POST", "/v1%2Fchat%2Fcompletions", _body()),
        "double slash": _http("POST", "//v1/chat/completions", _body()),
        "trailing slash": _http("POST", "/v1/chat/completions/", _body()),
        "absolute-form, unknown model": _http(
            "POST", f"{evil_url}/v1/chat/completions", _body("nope")
        ),
        "wrong method": _http("PUT", CHAT, _body()),
        "GET with body": _http("GET", CHAT, _body()),
    }


# Cases that name a host to the gateway (Host, X-Forwarded-*, Forwarded) but are otherwise
# valid: they are served from the configured upstream only, never from the named host.
def _host_tricks(evil_url: str) -> dict[str, bytes]:
    host = evil_url.removeprefix("http://")
    unknown = _body("nope")
    return {
        f"{name} + unknown model": _http("POST", CHAT, unknown, [(header, value)])
        for name, header, value in (
            ("X-Forwarded-Host", "X-Forwarded-Host", host),
            ("X-Forwarded-For", "X-Forwarded-For", "127.0.0.1"),
            ("X-Forwarded-Proto", "X-Forwarded-Proto", "https"),
            ("Forwarded", "Forwarded", f"for=127.0.0.1;host={host}"),
            ("X-Original-URL", "X-Original-URL", evil_url + "/v1/chat/completions"),
            ("X-Rewrite-URL", "X-Rewrite-URL", "/admin"),
            ("OpenAI-Base-URL", "OpenAI-Base-URL", evil_url + "/v1"),
        )
    }


def test_every_hostile_request_is_refused_and_nothing_is_forwarded(
    gateway: RunningGateway, fake: FakeUpstream, evil: FakeUpstream
) -> None:
    fake.reset()
    outcomes: dict[str, int] = {}
    cases = {**_cases(evil.url), **_host_tricks(evil.url)}
    for name, request in cases.items():
        status, body = _status_and_body(raw_exchange(gateway.port, request))
        outcomes[name] = status
        if status == 400 and not body.startswith(b"{"):
            # The HTTP parser refused the request itself (a malformed request line or
            # header): a plain 400 before the app runs, which forwards nothing either.
            continue
        assert 400 <= status < 500, (name, status, body[:200])
        assert_openai_error(body, status)
    assert fake.requests == [], [(r.path, r.body[:80]) for r in fake.requests]
    assert evil.connections_opened == 0
    assert all(400 <= s < 500 for s in outcomes.values()), outcomes
    # A few that must carry a specific answer.
    assert outcomes["model not allowed for caller"] == 403
    assert outcomes["no key"] == 401
    assert outcomes["wrong method"] == 405
    assert outcomes["max_tokens huge"] == outcomes["n huge"] == 400
    assert outcomes["nested 10,000 deep"] == 400
    assert outcomes["non-UTF-8 in content"] == 400


def test_crlf_in_values_that_reach_upstream_headers_is_refused_at_config(
    fake: FakeUpstream,
) -> None:
    """The only values that reach upstream headers come from config (api_key, headers):
    a CR/LF there is refused when the gateway starts, not sent."""
    for section in ({"api_key": "sk-a\r\nX-Evil: 1"}, {"headers": {"X-Org": "a\r\nX-Evil: 1"}}):
        config = gateway_config(fake.url, "sk-upstream-hostile-key")
        raw = msgspec.to_builtins(config)
        raw["upstreams"]["fake"].update(section)
        with pytest.raises(ValueError, match=r"CR|LF|control|header|invalid"):
            create_app(parse_config(raw))
    assert fake.requests == []


def test_a_valid_request_with_host_tricks_goes_only_to_the_configured_upstream(
    gateway: RunningGateway, fake: FakeUpstream, evil: FakeUpstream
) -> None:
    fake.reset()
    host = evil.url.removeprefix("http://")
    tricks = [
        ("X-Forwarded-Host", host),
        ("Forwarded", f"host={host}"),
        ("X-Original-URL", evil.url + "/v1/chat/completions"),
    ]
    status, body = _status_and_body(
        raw_exchange(gateway.port, _http("POST", CHAT, _body(), tricks))
    )
    assert status == 200, body
    (request,) = fake.requests
    assert request.path == "/v1/chat/completions"
    names = {name.lower() for name, _ in request.headers}
    assert not names & {"x-forwarded-host", "forwarded", "x-original-url"}
    assert request.header("authorization") == "Bearer sk-upstream-hostile-key"
    # An absolute-form target (RFC 9112 §3.2.2) names a host: it is served, from config.
    absolute = _http("POST", f"{evil.url}{CHAT}", _body())
    status, body = _status_and_body(raw_exchange(gateway.port, absolute))
    assert status == 200, body
    assert [r.path for r in fake.requests] == [CHAT, CHAT]
    assert evil.connections_opened == 0


def test_rejected_keys_do_not_pile_up_tracebacks() -> None:
    """A flood of bad keys must not grow memory: each 401 is a fresh exception, so no
    traceback (holding the request's frames and the key it presented) is chained onto a
    shared one and kept for the life of the process."""
    auth = Authenticator([CallerConfig(name="app", key=CALLER_KEY)])
    depths = []
    for _ in range(50):
        for headers in ([(b"authorization", b"Bearer wrong-key-0123456789")], []):
            with pytest.raises(GatewayError) as info:
                auth.authenticate(headers)
            depth, tb = 0, info.value.__traceback__
            while tb is not None:
                depth, tb = depth + 1, tb.tb_next
            depths.append(depth)
    assert max(depths) == min(depths)


ROUTING_VALUES: dict[str, tuple[str, str]] = {
    # key → (the value the caller may be allowed, a second value smuggled beside it)
    "model": ('"gpt"', '"private"'),
    "stream": ("false", "true"),
    "stream_options": ('{"include_usage": false}', '{"include_usage": true}'),
    "max_tokens": ("5", "70000"),
    "max_completion_tokens": ("5", "70000"),
    "n": ("1", "3"),
}
SPELLINGS = {"plain": lambda k: k, "escaped": lambda k: f"{k[:-1]}\\u{ord(k[-1]):04x}"}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
@pytest.mark.parametrize("order", ["first wins?", "last wins?"])
@pytest.mark.parametrize("key", sorted(ROUTING_VALUES))
def test_a_repeated_routing_key_reaches_the_upstream_once_with_the_value_read(
    gateway: RunningGateway, fake: FakeUpstream, key: str, order: str, spelling: str
) -> None:
    one, other = ROUTING_VALUES[key]
    values = (one, other) if order == "first wins?" else (other, one)
    name = SPELLINGS[spelling](key)
    members = [f'"{name}": {values[0]}', f'"{key}": {values[1]}']
    base = {"model": '"gpt"', "messages": '[{"role": "user", "content": "hi"}]'}
    base.pop(key, None)
    body = "{" + ", ".join(members + [f'"{k}": {v}' for k, v in base.items()]) + "}"
    fake.reset()
    status, answer = _status_and_body(
        raw_exchange(gateway.port, _http("POST", CHAT, body.encode()))
    )
    # The gateway reads the last value (as msgspec does); whatever it decided on is what
    # the upstream gets, alone: no second value for a first-wins parser to pick.
    read = values[1]
    if key == "model" and read == '"private"':
        assert status == 403, answer  # the caller may not use it: nothing is forwarded
        assert fake.requests == []
        return
    assert status == 200, answer
    (request,) = fake.requests
    raw = request.body.decode()
    assert raw.count(f'"{key}"') == 1, raw
    assert "\\u" not in raw, raw
    sent = msgspec.json.decode(request.body)
    expected = "fake-model" if key == "model" else msgspec.json.decode(read.encode())
    if key == "stream_options" and sent.get("stream"):
        expected = {"include_usage": True}  # the gateway asks for usage on streams itself
    assert sent[key] == expected
