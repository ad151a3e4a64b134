"""Behaviours for ``FakeUpstream`` that speak Anthropic's Messages API.

Each is a ``Behaviour`` (``async def run(ex)``), plugged in with ``FakeUpstream(default=...)``,
``enqueue`` or ``route``; each keeps the requests it answered in ``received`` so a test can
check what the translation sent (``x-api-key``, ``anthropic-version``, the JSON body)::

    api = AnthropicAPI(key="sk-ant-test")
    with FakeUpstream(default=api) as up:
        up.enqueue(overloaded())                      # one 529, then the default again
        ...
        assert api.received[-1].header("anthropic-version") == "2023-06-01"

``AnthropicAPI`` answers ``POST /v1/messages`` itself, deterministically: a client tool is
called (first tool, empty input) when the last user turn holds no ``tool_result``, else
it answers with text naming the tool results it got, so a multi-turn tool loop runs
against it. ``POST /v1/messages/count_tokens`` answers ``{"input_tokens": n}``, n the
body's length over 4. Every stream it sends is kept in ``sent`` (bytes as written).
``transcript(...)`` replays a recorded stream from tests/providers/transcripts.
The faults are the ones Anthropic shows: 529 ``overloaded_error`` as a status, an
``error`` event mid-stream, a connection cut mid-stream (clean end or reset), a slow first
event.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from aifetch.sse import SSEBlockSplitter
from tests.support.fake_upstream import Exchange, RecordedRequest

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "providers" / "transcripts"
MESSAGE_ID = "msg_01FakeAnthropicUpstream"
REQUEST_ID = "req_01FakeAnthropicUpstream"

_enc = msgspec.json.Encoder().encode
_JSON = [("Content-Type", "application/json"), ("request-id", REQUEST_ID)]


def load(name: str) -> bytes:
    """A transcript's raw bytes."""
    return (TRANSCRIPTS / name).read_bytes()


def blocks(data: bytes) -> list[bytes]:
    """The raw SSE blocks of ``data`` (what a server writes, event by event)."""
    splitter = SSEBlockSplitter()
    out = splitter.feed(data)
    rest = splitter.close()
    return [*out, rest] if rest else out


def error_body(kind: str, message: str) -> bytes:
    return _enc({"type": "error", "error": {"type": kind, "message": message}})


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + _enc(data) + b"\n\n"


class _Recording:
    received: list[RecordedRequest]

    def _record(self, ex: Exchange) -> None:
        self.received.append(ex.request)


# --------------------------------------------------------------------------- the API


@dataclass
class AnthropicAPI(_Recording):
    """``POST /v1/messages`` with a key check, answering stream or not (see module doc)."""

    key: str = "sk-ant-test-key-0001"
    model: str = "claude-fake-1"
    text: str = "Hello from the fake Claude"
    pieces: int = 4
    received: list[RecordedRequest] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)

    async def run(self, ex: Exchange) -> None:
        self._record(ex)
        request = ex.request
        routes = ("/v1/messages", "/v1/messages/count_tokens")
        if request.method != "POST" or request.path not in routes:
            body = error_body("not_found_error", f"Not found: {request.method} {request.path}")
            await ex.send_response(404, body, _JSON)
            return
        if request.header("x-api-key") != self.key:
            body = error_body("authentication_error", "invalid x-api-key")
            await ex.send_response(401, body, _JSON)
            return
        if not request.header("anthropic-version"):
            body = error_body("invalid_request_error", "anthropic-version: header is required")
            await ex.send_response(400, body, _JSON)
            return
        payload = request.json()
        if request.path.endswith("/count_tokens"):
            counted = {"input_tokens": len(request.body) // 4}
            await ex.send_response(200, _enc(counted), _JSON)
            return
        content, stop = self._answer(payload)
        usage = {"input_tokens": len(request.body) // 4, "output_tokens": 5 * len(content)}
        if payload.get("stream"):
            events = self._events(payload, content, stop, usage)
            self.sent.extend(events)
            await _send_stream(ex, events)
        else:
            message = {
                "id": MESSAGE_ID,
                "type": "message",
                "role": "assistant",
                "model": payload.get("model") or self.model,
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": usage,
            }
            await ex.send_response(200, _enc(message), _JSON)

    def _answer(self, payload: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        messages = payload.get("messages") or []
        last = messages[-1].get("content") if messages else ""
        results = [
            b for b in (last if isinstance(last, list) else []) if b.get("type") == "tool_result"
        ]
        tools = payload.get("tools") or []
        if tools and not results:
            call = {"type": "tool_use", "id": "toolu_01Fake", "name": tools[0]["name"]}
            call["input"] = {}
            return [{"type": "text", "text": "Let me check."}, call], "tool_use"
        text = self.text
        if results:
            text += " (tool results: " + ", ".join(str(r.get("content")) for r in results) + ")"
        return [{"type": "text", "text": text}], "end_turn"

    def _events(
        self,
        payload: dict[str, Any],
        content: list[dict[str, Any]],
        stop: str,
        usage: dict[str, int],
    ) -> list[bytes]:
        message = {
            "id": MESSAGE_ID,
            "type": "message",
            "role": "assistant",
            "model": payload.get("model") or self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1},
        }
        events = [sse("message_start", {"type": "message_start", "message": message})]
        events.append(sse("ping", {"type": "ping"}))
        for index, block in enumerate(content):
            events.extend(self._block_events(index, block))
        delta = {"stop_reason": stop, "stop_sequence": None}
        end_usage = {"output_tokens": usage["output_tokens"]}
        events.append(
            sse("message_delta", {"type": "message_delta", "delta": delta, "usage": end_usage})
        )
        events.append(sse("message_stop", {"type": "message_stop"}))
        return events

    def _block_events(self, index: int, block: dict[str, Any]) -> list[bytes]:
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            text = block["text"]
            step = max(1, -(-len(text) // self.pieces))
            deltas = [
                {"type": "text_delta", "text": text[i : i + step]}
                for i in range(0, len(text), step)
            ]
        else:
            start = {**block, "input": {}}
            raw = _enc(block["input"]).decode()
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in ("", raw)]
        out = [
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        ]
        out += [
            sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        ]
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        return out


async def _send_stream(
    ex: Exchange, events: list[bytes], *, delay: float = 0.0, first_delay: float = 0.0
) -> None:
    await ex.start_stream(200, [("request-id", REQUEST_ID)])
    if first_delay and not await ex.sleep(first_delay):
        return
    for i, event in enumerate(events):
        if i and delay and not await ex.sleep(delay):
            return
        await ex.send_chunks(event)
    await ex.end_stream()


# --------------------------------------------------------------------------- replays and faults


@dataclass
class Transcript(_Recording):
    """Replay a recorded stream (``events`` blocks of it, all if ``None``), then end the body
    cleanly (``cut`` makes that a cut when the transcript had more) or reset it."""

    data: bytes
    events: int | None = None
    reset: bool = False
    delay: float = 0.0
    first_delay: float = 0.0
    received: list[RecordedRequest] = field(default_factory=list)

    async def run(self, ex: Exchange) -> None:
        self._record(ex)
        sent = blocks(self.data)[: self.events]
        if self.reset:
            await ex.start_stream(200, [("request-id", REQUEST_ID)])
            await ex.send_chunks(*sent)
            await asyncio.sleep(0.01)  # let the bytes leave before the RST
            ex.reset()
            return
        await _send_stream(ex, sent, delay=self.delay, first_delay=self.first_delay)


def transcript(name: str, **options: Any) -> Transcript:
    """Replay ``tests/providers/transcripts/<name>`` (see ``Transcript`` for options)."""
    return Transcript(load(name), **options)


def error_event_mid_stream() -> Transcript:
    """Text, then ``event: error`` (``overloaded_error``), then the stream ends."""
    return transcript("anthropic_overloaded.sse")


def cut_mid_stream(events: int = 4, *, reset: bool = False) -> Transcript:
    """The first ``events`` events of a text stream, then a clean end (or RST)."""
    return transcript("anthropic_tool_use_pieces.sse", events=events, reset=reset)


def slow_first_event(delay: float, name: str = "anthropic_text.sse") -> Transcript:
    """Headers at once, the first event only after ``delay`` seconds."""
    return transcript(name, first_delay=delay)


@dataclass
class Status(_Recording):
    """An error status with Anthropic's error body."""

    status: int
    kind: str
    message: str
    retry_after: str | None = None
    received: list[RecordedRequest] = field(default_factory=list)

    async def run(self, ex: Exchange) -> None:
        self._record(ex)
        headers = list(_JSON)
        if self.retry_after is not None:
            headers.append(("retry-after", self.retry_after))
        await ex.send_response(self.status, error_body(self.kind, self.message), headers)


def overloaded(retry_after: str | None = None) -> Status:
    """529 ``overloaded_error``, as Anthropic answers when it is overloaded."""
    return Status(529, "overloaded_error", "Overloaded", retry_after)


def rate_limited(retry_after: str = "1") -> Status:
    return Status(
        429, "rate_limit_error", "Number of request tokens has exceeded your limit.", retry_after
    )


@dataclass
class Message(_Recording):
    """A fixed non-stream Message body."""

    body: dict[str, Any]
    received: list[RecordedRequest] = field(default_factory=list)

    async def run(self, ex: Exchange) -> None:
        self._record(ex)
        await ex.send_response(200, _enc(self.body), _JSON)
