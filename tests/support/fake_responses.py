"""Behaviours for ``FakeUpstream`` that speak OpenAI's Responses API.

``ResponsesAPI`` answers ``POST /v1/responses`` (stream or not), ``GET`` and ``DELETE
/v1/responses/{id}``, ``GET /v1/responses/{id}/input_items`` and ``POST
/v1/responses/{id}/cancel``, deterministically, and keeps the responses it made: a call
whose ``previous_response_id`` it did not make is refused 400, as OpenAI refuses it. Each
instance names its ids with its own ``prefix``, so a test can tell which upstream made a
response. Every stream it sends is in ``sent`` (bytes as written), so a test can check a
relay byte for byte.

The stream is the API's event sequence (``response.created``, ``.in_progress``,
``.output_item.added``, ``.content_part.added``, ``.output_text.delta``…, the ``.done``
events, ``response.completed`` with the usage). ``fault`` cuts it: ``"error-before"`` (an
``error`` event after ``response.in_progress``, before any output), ``"error-after"`` (an
``error`` event after two deltas), ``"failed-after"`` (``response.failed`` after two
deltas), ``"cut"`` (the body ends after two deltas).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from tests.support.fake_upstream import Exchange, RecordedRequest

CREATED_AT = 1_741_476_542
_enc = msgspec.json.Encoder().encode
_JSON = [("Content-Type", "application/json"), ("x-request-id", "req_fake_responses")]


def error_body(message: str, code: str | None = None, param: str | None = None) -> bytes:
    return _enc(
        {"error": {"message": message, "type": "invalid_request_error", "param": param,
                   "code": code}}
    )  # fmt: skip


def usage_of(request: RecordedRequest, text: str) -> dict[str, Any]:
    """Figures that depend on the request (so two calls differ) and name every detail."""
    prompt = len(request.body) // 4 + 1
    cached = prompt // 2
    completion = len(text.split()) + 3
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": prompt + completion,
    }


@dataclass
class ResponsesAPI:
    prefix: str = "resp_fake"
    text: str = "Hello from the fake Responses API"
    pieces: int = 4
    fault: str | None = None  # one stream cut short, then cleared (see the module doc)
    delay: float = 0.0  # seconds between stream events
    made: dict[str, dict[str, Any]] = field(default_factory=dict)
    count: int = 0  # responses made, deleted ones included: an id is never made twice
    received: list[RecordedRequest] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)

    async def run(self, ex: Exchange) -> None:
        self.received.append(ex.request)
        request = ex.request
        if request.path == "/v1/responses" and request.method == "POST":
            await self._create(ex)
        elif request.path.startswith("/v1/responses/"):
            await self._one(ex, request.path.removeprefix("/v1/responses/"))
        else:
            await ex.send_response(404, error_body(f"Unknown route {request.path}"), _JSON)

    # --------------------------------------------------------------------- create

    async def _create(self, ex: Exchange) -> None:
        payload = ex.request.json()
        previous = payload.get("previous_response_id")
        if previous is not None and previous not in self.made:
            message = f"Previous response with id '{previous}' not found."
            body = error_body(message, "previous_response_not_found", "previous_response_id")
            await ex.send_response(400, body, _JSON)
            return
        self.count += 1
        response_id = f"{self.prefix}_{self.count:04d}"
        text = self.text if previous is None else f"{self.text} (after {previous})"
        done = self._response(response_id, payload, text, "completed", ex.request)
        self.made[response_id] = done
        if not payload.get("stream"):
            await ex.send_response(200, _enc(done), _JSON)
            return
        events = self._events(response_id, payload, text, done)
        fault, self.fault = self.fault, None
        events = _cut(events, fault, response_id)
        await ex.start_stream(200, [("x-request-id", "req_fake_responses")])
        for i, event in enumerate(events):
            if i and self.delay and not await ex.sleep(self.delay):
                return  # the peer went away
            self.sent.append(event)
            await ex.send_chunks(event)
        await ex.end_stream()

    def _response(
        self,
        response_id: str,
        payload: dict[str, Any],
        text: str,
        status: str,
        request: RecordedRequest,
    ) -> dict[str, Any]:
        output = []
        usage = None
        if status == "completed":
            output = [_message(response_id, text, "completed")]
            usage = usage_of(request, text)
        return {
            "id": response_id,
            "object": "response",
            "created_at": CREATED_AT,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": payload.get("instructions"),
            "model": payload.get("model"),
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": payload.get("previous_response_id"),
            "store": True,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "metadata": {},
        }

    def _events(
        self, response_id: str, payload: dict[str, Any], text: str, done: dict[str, Any]
    ) -> list[bytes]:
        start = {**done, "status": "in_progress", "output": [], "usage": None}
        item_id = f"msg_{response_id}"
        step = max(1, -(-len(text) // self.pieces))
        deltas = [text[i : i + step] for i in range(0, len(text), step)]
        part = {"type": "output_text", "text": "", "annotations": []}
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        bodies: list[dict[str, Any]] = [
            {"type": "response.created", "response": start},
            {"type": "response.in_progress", "response": start},
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": _message(response_id, "", "in_progress"),
            },
            {"type": "response.content_part.added", **where, "part": part},
            *(
                {"type": "response.output_text.delta", **where, "delta": d, "logprobs": []}
                for d in deltas
            ),
            {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **where, "part": {**part, "text": text}},
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": _message(response_id, text, "completed"),
            },
            {"type": "response.completed", "response": done},
        ]
        return [sse(body, n) for n, body in enumerate(bodies)]

    # --------------------------------------------------------------------- one response

    async def _one(self, ex: Exchange, rest: str) -> None:
        response_id, _, action = rest.partition("/")
        method = ex.request.method
        made = self.made.get(response_id)
        if made is None:
            message = f"No response found with id '{response_id}'."
            await ex.send_response(404, error_body(message, None, None), _JSON)
            return
        if (method, action) == ("GET", ""):
            await ex.send_response(200, _enc(made), _JSON)
        elif (method, action) == ("DELETE", ""):
            del self.made[response_id]
            deleted = {"id": response_id, "object": "response", "deleted": True}
            await ex.send_response(200, _enc(deleted), _JSON)
        elif (method, action) == ("POST", "cancel"):
            await ex.send_response(200, _enc({**made, "status": "cancelled"}), _JSON)
        elif (method, action) == ("GET", "input_items"):
            items = {"object": "list", "data": [], "first_id": None, "last_id": None}
            items["has_more"] = False
            await ex.send_response(200, _enc(items), _JSON)
        else:
            await ex.send_response(405, error_body(f"{method} not allowed"), _JSON)


def _message(response_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if text else []
    return {
        "id": f"msg_{response_id}",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def sse(body: dict[str, Any], sequence_number: int) -> bytes:
    data = {**body, "sequence_number": sequence_number}
    return b"event: " + body["type"].encode() + b"\ndata: " + _enc(data) + b"\n\n"


def _cut(events: list[bytes], fault: str | None, response_id: str) -> list[bytes]:
    if fault is None:
        return events
    if fault == "error-before":
        error = {"type": "error", "code": "server_error", "message": "The server had an error"}
        return [*events[:2], sse({**error, "param": None}, 2)]
    kept = events[:6]  # created, in_progress, item added, part added, two deltas
    if fault == "cut":
        return kept
    if fault == "error-after":
        error = {"type": "error", "code": "server_error", "message": "The server had an error"}
        return [*kept, sse({**error, "param": None}, 6)]
    if fault == "failed-after":
        failed = {
            "id": response_id,
            "object": "response",
            "status": "failed",
            "error": {"code": "server_error", "message": "The model failed mid-answer"},
            "output": [],
            "usage": None,
        }
        return [*kept, sse({"type": "response.failed", "response": failed}, 6)]
    raise ValueError(f"unknown fault {fault!r}")
