"""Secrets never leak through the dialects: an anthropic, a gemini and an openai upstream
that quote their key back in every way they can (error bodies of each provider's shape,
error events mid-stream, the answer's own text, stream or whole), reached through every
new route (chat completions translated, ``/v1/messages`` translated and relayed,
``/v1/messages/count_tokens``, ``/v1/responses`` and a response by id), with the caller's
key sent the Anthropic way too. Every byte the caller receives, every log record (DEBUG,
all loggers), ``/metrics`` and every request the upstream received are searched: no
upstream key reaches a caller or a log, the Gemini key is never in a URL, and the caller's
key never travels upstream.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aifetch.gateway import ConfigError, GatewayConfig, parse_config
from tests.support import fake_anthropic, fake_gemini
from tests.support.fake_responses import ResponsesAPI
from tests.support.fake_upstream import Behaviour, FakeUpstream, respond

from ._inputs_support import fake_upstream, logs_at_debug, running_gateway

MIDDLES = {name: "SECRET-" + secrets.token_hex(8) for name in ("ant", "gem", "oai", "caller")}
ANTHROPIC_KEY = f"sk-ant-{MIDDLES['ant']}"
GEMINI_KEY = f"AIza{MIDDLES['gem']}"
OPENAI_KEY = f"sk-oai-{MIDDLES['oai']}"
CALLER_KEY = f"gw-caller-{MIDDLES['caller']}"
UPSTREAM_KEYS = (ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY)
NEEDLES = (*UPSTREAM_KEYS, CALLER_KEY, *MIDDLES.values())
ECHO = f"keys {ANTHROPIC_KEY} {GEMINI_KEY} {OPENAI_KEY}"


class _Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.extend([self.format(record), repr(vars(record))])


def _leaks(texts: list[str]) -> list[str]:
    return [
        f"{needle!r} in {text[:200]!r}" for text in texts for needle in NEEDLES if needle in text
    ]


def _config(url: str) -> GatewayConfig:
    timeout = {"connect": 2, "first_byte": 5, "idle": 5}
    one = {"attempts": 1}
    return parse_config(
        {
            "upstreams": {
                "claude": {"kind": "anthropic", "base_url": url, "api_key": ANTHROPIC_KEY,
                           "timeout": timeout},
                "gem": {"kind": "gemini", "base_url": url + "/v1beta", "api_key": GEMINI_KEY,
                        "timeout": timeout},
                "oa": {"base_url": url + "/v1", "api_key": OPENAI_KEY, "timeout": timeout},
            },
            "models": {
                "claude": {"targets": [{"upstream": "claude"}], "retry": one},
                "gem": {"targets": [{"upstream": "gem"}], "retry": one},
                "gpt": {"targets": [{"upstream": "oa"}], "retry": one},
            },
            "callers": [{"name": "app", "key": CALLER_KEY}],
            "pipes": [{"use": "aifetch.gateway:log_calls", "options": {"level": "DEBUG"}}],
            "server": {"heartbeat": 0, "shutdown_grace": 2},
        }
    )  # fmt: skip


def _anthropic_stream(text: str, error: str | None = None) -> fake_anthropic.Transcript:
    sse = fake_anthropic.sse
    start = {"type": "message_start", "message": {"id": "msg_1", "type": "message",
             "role": "assistant", "model": "m", "content": [],
             "usage": {"input_tokens": 3, "output_tokens": 1}}}  # fmt: skip
    events = [
        sse("message_start", start),
        sse("content_block_start", {"type": "content_block_start", "index": 0,
                                    "content_block": {"type": "text", "text": ""}}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "text_delta", "text": text}}),
    ]  # fmt: skip
    if error is not None:
        events.append(sse("error", {"type": "error", "error": {"type": "api_error",
                                                               "message": error}}))  # fmt: skip
    else:
        events += [
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                  "usage": {"output_tokens": 5}}),
            sse("message_stop", {"type": "message_stop"}),
        ]  # fmt: skip
    return fake_anthropic.Transcript(b"".join(events))


def _anthropic_message(text: str) -> fake_anthropic.Message:
    return fake_anthropic.Message(
        {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
         "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
         "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 5}}
    )  # fmt: skip


def _gemini_stream(text: str, error: str | None = None) -> fake_gemini.Transcript:
    frames = [fake_gemini.frame({"candidates": [{"content": {"parts": [{"text": text}],
                                 "role": "model"}, "index": 0}], "responseId": "r1"})]  # fmt: skip
    if error is not None:
        frames.append(fake_gemini.frame({"error": {"code": 500, "message": error,
                                                   "status": "INTERNAL"}}))  # fmt: skip
    else:
        frames.append(fake_gemini.frame({"candidates": [{"content": {"parts": [{"text": ""}],
                      "role": "model"}, "finishReason": "STOP", "index": 0}],
                      "responseId": "r1"}))  # fmt: skip
    return fake_gemini.Transcript(b"".join(frames))


Call = tuple[str, str, Behaviour | None, dict[str, Any] | None, dict[str, str]]


def _calls() -> list[Call]:
    """(name, path, upstream behaviour, body, headers) for each call."""
    bearer = {"authorization": f"Bearer {CALLER_KEY}"}
    anthropic_way = {"x-api-key": CALLER_KEY, "anthropic-version": "2023-06-01"}
    hi = [{"role": "user", "content": "hi"}]
    calls: list[Call] = []

    def chat(model: str, stream: bool) -> dict[str, Any]:
        return {"model": model, "messages": hi, "stream": stream}

    def messages(model: str, stream: bool) -> dict[str, Any]:
        return {"model": model, "max_tokens": 32, "messages": hi, "stream": stream}

    for status, kind in ((400, "invalid_request_error"), (401, "authentication_error"),
                         (429, "rate_limit_error"), (500, "api_error"),
                         (529, "overloaded_error")):  # fmt: skip
        echo = fake_anthropic.Status(status, kind, ECHO)
        calls.append((f"anthropic {status}", "/v1/chat/completions", echo, chat("claude", False),
                      bearer))  # fmt: skip
        echo = fake_anthropic.Status(status, kind, ECHO)
        calls.append((f"messages native {status}", "/v1/messages", echo,
                      messages("claude", True), anthropic_way))  # fmt: skip
    for status, name in ((400, "INVALID_ARGUMENT"), (403, "PERMISSION_DENIED"),
                         (503, "UNAVAILABLE")):  # fmt: skip
        echo_gemini = fake_gemini.Status(status, name, f"API key not valid: {ECHO}")
        calls.append((f"gemini {status}", "/v1/chat/completions", echo_gemini,
                      chat("gem", True), bearer))  # fmt: skip
    calls += [
        ("anthropic text", "/v1/chat/completions", _anthropic_message(ECHO),
         chat("claude", False), bearer),
        ("anthropic stream text", "/v1/chat/completions", _anthropic_stream(ECHO),
         chat("claude", True), bearer),
        ("anthropic error event", "/v1/chat/completions", _anthropic_stream("hi", ECHO),
         chat("claude", True), bearer),
        ("gemini stream text", "/v1/chat/completions", _gemini_stream(ECHO),
         chat("gem", True), bearer),
        ("gemini error event", "/v1/chat/completions", _gemini_stream("hi", ECHO),
         chat("gem", True), bearer),
        ("messages native text", "/v1/messages", _anthropic_message(ECHO),
         messages("claude", False), anthropic_way),
        ("messages native stream", "/v1/messages", _anthropic_stream(ECHO),
         messages("claude", True), anthropic_way),
        ("messages native error event", "/v1/messages", _anthropic_stream("hi", ECHO),
         messages("claude", True), anthropic_way),
        ("messages via gemini", "/v1/messages", _gemini_stream(ECHO),
         messages("gem", True), anthropic_way),
        ("messages via openai error", "/v1/messages",
         respond(500, {"error": {"message": ECHO, "type": "server_error"}}),
         messages("gpt", False), anthropic_way),
        ("count tokens error", "/v1/messages/count_tokens",
         fake_anthropic.Status(400, "invalid_request_error", ECHO),
         {"model": "claude", "messages": hi}, anthropic_way),
        ("count tokens echo", "/v1/messages/count_tokens",
         respond(200, {"input_tokens": 1, "note": ECHO}),
         {"model": "claude", "messages": hi}, anthropic_way),
        ("responses stream", "/v1/responses", ResponsesAPI(text=ECHO),
         {"model": "gpt", "input": "hi", "stream": True}, bearer),
        ("responses error", "/v1/responses",
         respond(401, {"error": {"message": ECHO, "type": "invalid_request_error"}}),
         {"model": "gpt", "input": "hi"}, bearer),
        ("wrong x-api-key", "/v1/messages", None, messages("claude", False),
         {"x-api-key": CALLER_KEY + "x"}),
        ("upstream key as x-api-key", "/v1/messages", None, messages("claude", False),
         {"x-api-key": ANTHROPIC_KEY}),
    ]  # fmt: skip
    return calls


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with fake_upstream() as upstream:
        yield upstream


def test_the_dialects_never_show_a_key(fake: FakeUpstream) -> None:
    seen: list[str] = []
    statuses: dict[str, int] = {}
    sent = []
    with logs_at_debug(_Everything()) as logs, running_gateway(_config(fake.url)) as gateway:
        for name, path, behaviour, body, headers in _calls():
            if behaviour is not None:
                fake.enqueue(behaviour)
            with httpx.stream(
                "POST", gateway.url + path, json=body, headers=headers, timeout=10
            ) as response:
                data = b"".join(response.iter_raw())
            statuses[name] = response.status_code
            seen += [f"{name} {response.headers!r}", f"{name}: {data.decode('utf-8', 'replace')}"]
            sent.extend(fake.requests)
            fake.reset()
        # A response by id, whose upstream answer quotes the key.
        api = ResponsesAPI(text=ECHO)
        fake.enqueue(api, times=2)
        auth = {"authorization": f"Bearer {CALLER_KEY}"}
        new = {"model": "gpt", "input": "hi"}
        made = httpx.post(gateway.url + "/v1/responses", json=new, headers=auth, timeout=10)
        got = httpx.get(gateway.url + f"/v1/responses/{made.json()['id']}", headers=auth)
        seen += [made.text, got.text, repr(got.headers)]
        sent.extend(fake.requests)
        seen.append(httpx.get(gateway.url + "/metrics").text)
    seen += logs.texts
    seen += [repr(e) for e in fake.errors]
    leaks = _leaks(seen)
    assert leaks == [], "\n".join(leaks)
    # The calls ran as meant: answers, refusals and upstream failures alike.
    assert statuses["anthropic text"] == statuses["messages native stream"] == 200
    assert statuses["anthropic 401"] == statuses["messages native 401"] == 502
    assert statuses["anthropic 529"] == statuses["messages native 529"] == 529
    assert statuses["gemini 400"] == 502  # Gemini's own 400 for a bad key: not the caller's
    assert statuses["wrong x-api-key"] == statuses["upstream key as x-api-key"] == 401
    assert got.status_code == 200
    assert "[redacted]" in got.text
    assert sum("[redacted]" in text for text in seen) >= 20
    # What each upstream received: its own key in its own header, never in a URL, and never
    # the caller's key.
    assert sent
    for request in sent:
        wire = repr(request.headers) + request.path + request.query
        wire += request.body.decode("utf-8", "replace")
        assert CALLER_KEY not in wire
        assert MIDDLES["caller"] not in wire
        assert "key=" not in request.query
        for key in UPSTREAM_KEYS:
            assert key not in request.path + request.query + request.body.decode()
    by_header = {
        "x-api-key": ANTHROPIC_KEY,
        "x-goog-api-key": GEMINI_KEY,
        "authorization": f"Bearer {OPENAI_KEY}",
    }
    used = {h for request in sent for h in by_header if request.header(h) == by_header[h]}
    assert used == set(by_header)


def test_a_key_in_a_gemini_base_url_query_is_refused_at_start_up() -> None:
    """A key belongs in api_key (sent as a header); put in the URL as credentials, the
    config is refused, naming the key path but never the value."""
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "upstreams": {"gem": {"kind": "gemini",
                                      "base_url": f"https://user:{GEMINI_KEY}@example.test/v1"}},
                "models": {"gem": {"targets": [{"upstream": "gem"}]}},
            }
        )  # fmt: skip
    assert "upstreams.gem.base_url" in str(info.value)
    assert GEMINI_KEY not in str(info.value)
