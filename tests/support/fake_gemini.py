"""Behaviours for ``FakeUpstream`` that speak the Gemini API (``/v1beta`` routes).

As in ``fake_anthropic``: each behaviour keeps what it answered in ``received``;
``GeminiAPI`` answers ``POST /v1beta/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` deterministically (a function call for the first
declared function when the last user turn holds no ``functionResponse``, else text), and
refuses a key sent anywhere but the ``x-goog-api-key`` header, as a test of that rule.
``transcript(...)`` replays a recorded stream; the faults are a status with Google's error
body, an error object mid-stream, a cut and a slow first event.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import msgspec

from tests.support.fake_anthropic import blocks, load
from tests.support.fake_upstream import Exchange, RecordedRequest

RESPONSE_ID = "fakeGeminiResponse01"
MODEL_VERSION = "gemini-fake-001"
SIGNATURE = "CiQBjz1rX2ZhS2VTaWduYXR1cmVGb3JUZXN0c09ubHk="

_enc = msgspec.json.Encoder().encode
_JSON = [("Content-Type", "application/json")]


def error_body(code: int, status: str, message: str) -> bytes:
    return _enc({"error": {"code": code, "message": message, "status": status}})


def frame(data: dict[str, Any]) -> bytes:
    """One streamed response as the Gemini API frames it (CRLF line ends)."""
    return b"data: " + _enc(data) + b"\r\n\r\n"


class _Recording:
    received: list[RecordedRequest]

    def _record(self, ex: Exchange) -> None:
        self.received.append(ex.request)


@dataclass
class GeminiAPI(_Recording):
    key: str = "AIzaFakeGeminiKey000000001"
    text: str = "Hello from the fake Gemini"
    pieces: int = 3
    received: list[RecordedRequest] = field(default_factory=list)

    async def run(self, ex: Exchange) -> None:
        self._record(ex)
        request = ex.request
        path = unquote(request.path)
        method = path.removeprefix("/v1beta/models/").partition(":")[2]
        if request.method != "POST" or not path.startswith("/v1beta/models/") or not method:
            await ex.send_response(404, error_body(404, "NOT_FOUND", "Not found"), _JSON)
            return
        if "key=" in request.query or request.header("x-goog-api-key") != self.key:
            message = "API key not valid. Please pass a valid API key."
            await ex.send_response(400, error_body(400, "INVALID_ARGUMENT", message), _JSON)
            return
        payload = request.json()
        parts, reason = self._answer(payload)
        usage = {
            "promptTokenCount": len(request.body) // 4,
            "candidatesTokenCount": 3 * len(parts),
            "totalTokenCount": len(request.body) // 4 + 3 * len(parts),
        }
        if method == "streamGenerateContent":
            if request.query != "alt=sse":
                await ex.send_response(
                    400, error_body(400, "INVALID_ARGUMENT", "alt=sse expected"), _JSON
                )
                return
            await ex.start_stream(200)
            for event in self._events(parts, reason, usage):
                await ex.send_chunks(event)
            await ex.end_stream()
        elif method == "generateContent":
            body = _response(parts, reason, usage)
            await ex.send_response(200, _enc(body), _JSON)
        else:
            await ex.send_response(404, error_body(404, "NOT_FOUND", f"no method {method}"), _JSON)

    def _answer(self, payload: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        contents = payload.get("contents") or []
        last = contents[-1].get("parts", []) if contents else []
        answered = [p["functionResponse"] for p in last if "functionResponse" in p]
        declarations = [
            d for t in payload.get("tools") or [] for d in t.get("functionDeclarations", [])
        ]
        if declarations and not answered:
            call = {"functionCall": {"name": declarations[0]["name"], "args": {}}}
            call["thoughtSignature"] = SIGNATURE
            return [call], "STOP"
        text = self.text
        if answered:
            text += (
                " (function results: "
                + ", ".join(_enc(a["response"]).decode() for a in answered)
                + ")"
            )
        return [{"text": text}], "STOP"

    def _events(
        self, parts: list[dict[str, Any]], reason: str, usage: dict[str, int]
    ) -> list[bytes]:
        pieces: list[dict[str, Any]] = []
        for part in parts:
            text = part.get("text")
            if text is None:
                pieces.append(part)
                continue
            step = max(1, -(-len(text) // self.pieces))
            pieces.extend({"text": text[i : i + step]} for i in range(0, len(text), step))
        events = [frame(_response([p], None, usage)) for p in pieces]
        events.append(frame(_response([{"text": ""}], reason, usage)))
        return events


def _response(
    parts: list[dict[str, Any]], reason: str | None, usage: dict[str, int]
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if reason is not None:
        candidate["finishReason"] = reason
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": MODEL_VERSION,
        "responseId": RESPONSE_ID,
    }


@dataclass
class Transcript(_Recording):
    """Replay a recorded Gemini stream (first ``events`` blocks), then end or reset."""

    data: bytes
    events: int | None = None
    reset: bool = False
    first_delay: float = 0.0
    received: list[RecordedRequest] = field(default_factory=list)

    async def run(self, ex: Exchange) -> None:
        self._record(ex)
        sent = blocks(self.data)[: self.events]
        await ex.start_stream(200)
        if self.first_delay and not await ex.sleep(self.first_delay):
            return
        await ex.send_chunks(*sent)
        if self.reset:
            await asyncio.sleep(0.01)
            ex.reset()
            return
        await ex.end_stream()


def transcript(name: str, **options: Any) -> Transcript:
    return Transcript(load(name), **options)


def error_mid_stream() -> Transcript:
    return transcript("gemini_error_mid_stream.sse")


def cut_mid_stream(events: int = 1, *, reset: bool = False) -> Transcript:
    return transcript("gemini_text.sse", events=events, reset=reset)


def slow_first_event(delay: float) -> Transcript:
    return transcript("gemini_text.sse", first_delay=delay)


@dataclass
class Status(_Recording):
    status: int
    name: str
    message: str
    received: list[RecordedRequest] = field(default_factory=list)

    async def run(self, ex: Exchange) -> None:
        self._record(ex)
        await ex.send_response(self.status, error_body(self.status, self.name, self.message), _JSON)


def unavailable() -> Status:
    return Status(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")


def resource_exhausted() -> Status:
    return Status(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
