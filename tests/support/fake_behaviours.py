"""The behaviours part of the fake upstream: what it answers, one small class each.

A behaviour is anything with ``async def run(self, ex: Exchange)`` (``fake_http``); each
comes with a function that builds it, which is what tests call: plain responses and
status storms, OpenAI bodies and streams, faults (refusals, resets, stalls, trickles,
broken SSE, huge lines, slow starts), and the default handler that serves the OpenAI
routes deterministically when nothing was scripted.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from tests.support import openai_wire as wire
from tests.support.fake_http import (
    Behaviour,
    Exchange,
    Headers,
    RecordedRequest,
    frame_chunks,
    header_list,
)

__all__ = [
    "INVALID_JSON_EVENT", "MALFORMED_SSE", "ChatCompletion", "ChatStream", "DefaultHandler",
    "Echo", "Embeddings", "EndlessStream", "HugeLine", "Raw", "Refuse", "ResetAfterHeaders",
    "ResetBeforeHeaders", "ResetMidStream", "Respond", "SlowFirstByte", "Stall", "Trickle",
    "chat_completion", "chat_stream", "echo", "embeddings", "endless_stream", "error_event",
    "huge_line", "invalid_json_event", "malformed_sse", "models", "raw", "redirect", "refuse",
    "reset_after_headers", "reset_before_headers", "reset_mid_stream", "respond",
    "server_error", "slow_first_byte", "stall", "status_storm", "trickle",
]  # fmt: skip


def _request_json(request: RecordedRequest) -> dict[str, Any]:
    """The body as a JSON object, or ``{}`` when it is not one (behaviours never fail on it)."""
    try:
        data = msgspec.json.decode(request.body) if request.body else {}
    except msgspec.DecodeError:
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- plain responses


@dataclass(frozen=True, slots=True)
class Respond:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    reason: str | None = None

    async def run(self, ex: Exchange) -> None:
        await ex.send_response(self.status, self.body, self.headers, self.reason)


def respond(
    status: int = 200,
    body: bytes | str | Mapping[str, Any] | list[Any] = b"",
    headers: Headers | None = None,
    reason: str | None = None,
) -> Respond:
    """A fixed response. A dict or list body is sent as JSON, a str as UTF-8 text."""
    hlist = header_list(headers)
    has_type = any(n.lower() == "content-type" for n, _ in hlist)
    if isinstance(body, Mapping | list):
        data, ctype = wire.dumps(body), "application/json"
    elif isinstance(body, str):
        data, ctype = body.encode(), "text/plain; charset=utf-8"
    else:
        data, ctype = body, ""
    if ctype and not has_type:
        hlist.insert(0, ("Content-Type", ctype))
    return Respond(status, data, tuple(hlist), reason)


def status_storm(
    status: int = 429,
    retry_after: str | None = None,
    body: Mapping[str, Any] | None = None,
    headers: Headers | None = None,
) -> Respond:
    """An error status with OpenAI's error JSON; enqueue with ``times=n`` for a storm."""
    hlist = header_list(headers)
    if retry_after is not None:
        hlist.append(("Retry-After", retry_after))
    if body is None:
        kind = "rate_limit_exceeded" if status == 429 else "server_error"
        body = wire.error_body(f"fake upstream status {status}", type=kind, code=kind)
    return respond(status, body, hlist)


def server_error(status: int = 502, body: Mapping[str, Any] | None = None) -> Respond:
    return status_storm(status, None, body)


def redirect(status: int, location: str) -> Respond:
    return respond(status, b"", [("Location", location)])


@dataclass(frozen=True, slots=True)
class Raw:
    """Write these exact bytes, then close (or keep the connection when ``close=False``)."""

    data: bytes
    close: bool = True

    async def run(self, ex: Exchange) -> None:
        await ex.write_raw(self.data)
        if self.close:
            ex.close()


def raw(data: bytes, *, close: bool = True) -> Raw:
    return Raw(data, close)


@dataclass(frozen=True, slots=True)
class Echo:
    """Answer with JSON describing the request exactly as received."""

    async def run(self, ex: Exchange) -> None:
        req = ex.request
        try:
            text: str | None = req.body.decode()
        except UnicodeDecodeError:
            text = None
        body = {
            "method": req.method,
            "target": req.target,
            "path": req.path,
            "query": req.query,
            "http_version": req.http_version,
            "headers": [[n, v] for n, v in req.headers],
            "body": text,
            "body_base64": base64.b64encode(req.body).decode(),
            "connection_id": req.connection_id,
        }
        await ex.send_response(200, wire.dumps(body), [("Content-Type", "application/json")])


def echo() -> Echo:
    return Echo()


# --------------------------------------------------------------------------- OpenAI bodies


def _model_of(request: RecordedRequest, model: str | None) -> str:
    return model or str(_request_json(request).get("model") or wire.DEFAULT_MODEL)


def _usage_for(request: RecordedRequest, content: str) -> wire.JSON:
    prompt = wire.count_prompt_tokens(_request_json(request))
    return wire.usage_body(prompt, len(wire.split_content(content)))


@dataclass(frozen=True, slots=True)
class ChatCompletion:
    content: str | None = "Hello"
    model: str | None = None
    usage: bool = True
    tool_calls: tuple[Mapping[str, Any], ...] | None = None

    async def run(self, ex: Exchange) -> None:
        usage = _usage_for(ex.request, self.content or "") if self.usage else None
        body = wire.chat_completion_body(
            self.content,
            model=_model_of(ex.request, self.model),
            usage=usage,
            tool_calls=self.tool_calls,
        )
        await ex.send_response(200, wire.dumps(body), [("Content-Type", "application/json")])


def chat_completion(
    content: str | None = "Hello",
    model: str | None = None,
    usage: bool = True,
    tool_calls: Sequence[Mapping[str, Any]] | None = None,
) -> ChatCompletion:
    """A full non-stream ``chat.completion``; ``model`` defaults to the request's."""
    return ChatCompletion(content, model, usage, tuple(tool_calls) if tool_calls else None)


@dataclass(frozen=True, slots=True)
class ChatStream:
    """A ``text/event-stream`` of ``chat.completion.chunk`` events.

    ``chunks`` given: each dict is sent as one ``data:`` event and each bytes
    value verbatim, then ``[DONE]`` if ``done``. Otherwise events are built
    from ``content`` (see ``openai_wire.chat_stream_chunks``), with the usage
    chunk when the request asked via ``stream_options.include_usage`` (or
    always with ``usage="always"``).
    """

    chunks: tuple[bytes | Mapping[str, Any], ...] | None = None
    content: str = "Hello world"
    n_chunks: int | None = None
    delay: float = 0.0
    usage: bool | Literal["always"] = True
    done: bool = True
    tool_calls: tuple[Mapping[str, Any], ...] | None = None
    comments_between: bool = False
    model: str | None = None

    def events(self, request: RecordedRequest) -> list[bytes]:
        """The framed SSE events this stream sends for ``request`` (``[DONE]`` included)."""
        if self.chunks is not None:
            events = [c if isinstance(c, bytes) else wire.sse_event(c) for c in self.chunks]
        else:
            options = _request_json(request).get("stream_options") or {}
            asked = isinstance(options, dict) and options.get("include_usage") is True
            want = self.usage == "always" or (self.usage is True and asked)
            chunks = wire.chat_stream_chunks(
                self.content,
                model=_model_of(request, self.model),
                n_chunks=self.n_chunks,
                tool_calls=self.tool_calls,
                usage=_usage_for(request, self.content) if want else None,
            )
            events = [wire.sse_event(c) for c in chunks]
        return [*events, wire.SSE_DONE] if self.done else events

    async def run(self, ex: Exchange) -> None:
        events = self.events(ex.request)
        if self.delay <= 0 and not self.comments_between:
            await ex.send_whole_stream(frame_chunks(events))
        else:
            await ex.start_stream()
            for i, event in enumerate(events):
                if i and not await ex.sleep(self.delay):
                    return
                comment = wire.sse_comment() if i and self.comments_between else b""
                await ex.send_chunks(comment, event)
            await ex.end_stream()


def chat_stream(
    chunks: Sequence[bytes | Mapping[str, Any]] | None = None,
    *,
    content: str = "Hello world",
    n_chunks: int | None = None,
    delay: float = 0.0,
    usage: bool | Literal["always"] = True,
    done: bool = True,
    tool_calls: Sequence[Mapping[str, Any]] | None = None,
    comments_between: bool = False,
    model: str | None = None,
) -> ChatStream:
    return ChatStream(
        tuple(chunks) if chunks is not None else None,
        content,
        n_chunks,
        delay,
        usage,
        done,
        tuple(tool_calls) if tool_calls else None,
        comments_between,
        model,
    )


@dataclass(frozen=True, slots=True)
class Embeddings:
    dim: int = 8

    async def run(self, ex: Exchange) -> None:
        data = _request_json(ex.request)
        raw_input = data.get("input", "")
        inputs = [raw_input] if isinstance(raw_input, str) else [str(x) for x in raw_input]
        body = wire.embeddings_body(inputs, model=_model_of(ex.request, None), dim=self.dim)
        await ex.send_response(200, wire.dumps(body), [("Content-Type", "application/json")])


def embeddings(dim: int = 8) -> Embeddings:
    return Embeddings(dim)


def models(ids: Sequence[str] = (wire.DEFAULT_MODEL,)) -> Respond:
    return respond(200, wire.models_body(ids))


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True, slots=True)
class Refuse:
    """Read the request, then close (FIN, or a TCP RST with ``rst``) sending nothing."""

    rst: bool = False

    async def run(self, ex: Exchange) -> None:
        if self.rst:
            ex.reset()
        else:
            ex.close()


@dataclass(frozen=True, slots=True)
class ResetBeforeHeaders(Refuse):
    rst: bool = True


def refuse() -> Refuse:
    """Close (FIN) right after reading the request, sending nothing."""
    return Refuse()


def reset_before_headers() -> ResetBeforeHeaders:
    """Read the request, then reset the connection (RST) before any response byte."""
    return ResetBeforeHeaders()


@dataclass(frozen=True, slots=True)
class ResetAfterHeaders:
    status: int = 200

    async def run(self, ex: Exchange) -> None:
        await ex.start_stream(self.status)
        ex.reset()


def reset_after_headers(status: int = 200) -> ResetAfterHeaders:
    """Send a stream's response head, then RST."""
    return ResetAfterHeaders(status)


def _default_source() -> ChatStream:
    return chat_stream(content=wire.synthetic_content(32))


@dataclass(frozen=True, slots=True)
class _Truncated:
    """A chat stream's head and its first ``after_events`` events, then ``end``."""

    after_events: int
    source: ChatStream = field(default_factory=_default_source)

    async def run(self, ex: Exchange) -> None:
        await ex.start_stream()
        await ex.send_chunks(*self.source.events(ex.request)[: self.after_events])
        await self.end(ex)

    async def end(self, ex: Exchange) -> None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class ResetMidStream(_Truncated):
    async def end(self, ex: Exchange) -> None:
        ex.reset()


@dataclass(frozen=True, slots=True)
class Stall(_Truncated):
    async def end(self, ex: Exchange) -> None:
        await ex.wait_peer_gone()
        ex.close()


def reset_mid_stream(after_events: int = 2, source: ChatStream | None = None) -> ResetMidStream:
    """Send the first ``after_events`` events of ``source`` (a 32-word chat stream), then RST."""
    return ResetMidStream(after_events, source or _default_source())


def stall(after_events: int = 2, source: ChatStream | None = None) -> Stall:
    """Send ``after_events`` events, then go silent until the peer closes (which is recorded)."""
    return Stall(after_events, source or _default_source())


@dataclass(frozen=True, slots=True)
class EndlessStream:
    interval: float

    async def run(self, ex: Exchange) -> None:
        await ex.start_stream()
        await ex.send_chunks(wire.sse_event(wire.chat_chunk({"role": "assistant", "content": ""})))
        while await ex.sleep(self.interval):
            await ex.send_chunks(wire.sse_event(wire.chat_chunk({"content": " tok"})))
        ex.close()


def endless_stream(interval: float = 0.05) -> EndlessStream:
    """A chat stream of ``" tok"`` chunks every ``interval`` seconds until the peer closes."""
    return EndlessStream(interval)


@dataclass(frozen=True, slots=True)
class Trickle:
    body: bytes
    delay_per_byte: float = 0.0
    status: int = 200
    content_type: str = "text/event-stream"

    async def run(self, ex: Exchange) -> None:
        await ex.start_stream(self.status, content_type=self.content_type)
        for i in range(len(self.body)):
            if i and not await ex.sleep(self.delay_per_byte):
                return
            await ex.send_chunks(self.body[i : i + 1])
        await ex.end_stream()


def trickle(
    body: bytes | str | None = None,
    delay_per_byte: float = 0.0,
    *,
    status: int = 200,
    content_type: str = "text/event-stream",
) -> Trickle:
    """Send ``body`` one byte per chunk (default: a short chat stream with ``[DONE]``)."""
    if body is None:
        data = b"".join(wire.sse_event(c) for c in wire.chat_stream_chunks("Hello world"))
        data += wire.SSE_DONE
    else:
        data = body.encode() if isinstance(body, str) else body
    return Trickle(data, delay_per_byte, status, content_type)


def _chat_event(content: str) -> bytes:
    return wire.sse_event(wire.chat_chunk({"content": content}))


_ROLE_EVENT = wire.sse_event(wire.chat_chunk({"role": "assistant", "content": ""}))
_STOP_EVENT = wire.sse_event(wire.chat_chunk({}, finish_reason="stop"))

# Junk a spec-following decoder must skip (HTML §9.2.6): a line with no colon is
# a field name with an empty value, unknown fields are ignored, a non-digit
# retry is ignored, an id containing NUL is ignored, a comment is ignored, and a
# block with no data dispatches nothing. Lone CR is a valid line ending.
MALFORMED_SSE = b"".join(
    [
        _ROLE_EVENT,
        b"garbage line without a colon\n\n",
        b"unknown: field\nretry: soon\nid: a\x00b\n\n",
        b":a comment\n",
        _chat_event("Hello").replace(b"\n", b"\r"),
        b"event\n\n",
        _chat_event(" world").replace(b"\n\n", b"\r\n\r\n"),
        _STOP_EVENT,
        wire.SSE_DONE,
    ]
)


def malformed_sse() -> Trickle:
    """A chat stream wrapped in junk (see ``MALFORMED_SSE``); its content is still "Hello world"."""
    return Trickle(MALFORMED_SSE)


INVALID_JSON_EVENT = b'data: {"id": "chatcmpl-fake", "choices": [\n\n'


def invalid_json_event() -> ChatStream:
    """Role and one content event ("Hello"), an event whose data is not JSON, then the rest."""
    return chat_stream(
        [_ROLE_EVENT, _chat_event("Hello"), INVALID_JSON_EVENT, _chat_event(" world"), _STOP_EVENT]
    )


def error_event(
    before_content: bool = False,
    *,
    message: str = "The upstream model failed",
    type: str = "server_error",
    code: str | None = "internal_error",
) -> ChatStream:
    """An in-stream ``data: {"error": ...}`` event, before any content or after "Hello".

    The stream then ends without ``[DONE]``, as OpenAI-compatible servers do.
    """
    error = wire.sse_event(wire.error_body(message, type=type, code=code))
    events = [_ROLE_EVENT, error] if before_content else [_ROLE_EVENT, _chat_event("Hello"), error]
    return chat_stream(events, done=False)


@dataclass(frozen=True, slots=True)
class HugeLine:
    n_bytes: int

    async def run(self, ex: Exchange) -> None:
        await ex.start_stream()
        await ex.send_chunks(b"data: ")
        block = b"x" * 65536
        left = self.n_bytes
        while left > 0:
            await ex.send_chunks(block[: min(left, len(block))])
            left -= len(block)
        await ex.send_chunks(b"\n\n")
        await ex.end_stream()


def huge_line(n_bytes: int) -> HugeLine:
    """A ``text/event-stream`` with one ``data:`` line carrying ``n_bytes`` of ``x``."""
    return HugeLine(n_bytes)


@dataclass(frozen=True, slots=True)
class SlowFirstByte:
    delay: float
    then: Behaviour

    async def run(self, ex: Exchange) -> None:
        if await ex.sleep(self.delay):
            await self.then.run(ex)
        else:
            ex.close()


def slow_first_byte(delay: float, then: Behaviour | None = None) -> SlowFirstByte:
    """Wait ``delay`` seconds before answering with ``then`` (default: a chat stream)."""
    return SlowFirstByte(delay, then or chat_stream())


# --------------------------------------------------------------------------- default handler


@dataclass(frozen=True, slots=True)
class DefaultHandler:
    """Serves the OpenAI routes deterministically: content is "Hello from <model>".

    ``chunks`` switches chat streams to that many synthetic words, for benchmarks.
    """

    chunks: int | None = None
    chunk_delay: float = 0.0
    model_ids: tuple[str, ...] = (wire.DEFAULT_MODEL, "gpt-4o-mini")
    cache: dict[bytes, bytes] = field(default_factory=dict, compare=False, repr=False)

    def _content(self, model: str) -> str:
        return wire.synthetic_content(self.chunks) if self.chunks else f"Hello from {model}"

    def pick(self, req: RecordedRequest) -> Behaviour:
        route = (req.method, req.path)
        if req.path.startswith("/echo"):
            return echo()
        if route == ("GET", "/v1/models"):
            return models(self.model_ids)
        if req.method == "POST" and req.path in _JSON_ROUTES:
            try:
                data = msgspec.json.decode(req.body)
            except msgspec.DecodeError:
                return respond(400, wire.error_body("We could not parse the JSON body."))
            if not isinstance(data, dict):
                return respond(400, wire.error_body("The body must be a JSON object."))
            return self._openai(req.path, data)
        return respond(404, wire.error_body(f"Unknown route {req.method} {req.path}"))

    def _openai(self, path: str, data: dict[str, Any]) -> Behaviour:
        model = str(data.get("model") or wire.DEFAULT_MODEL)
        content = self._content(model)
        if path == "/v1/embeddings":
            return embeddings()
        if path == "/v1/completions":
            return _TextCompletion(content, bool(data.get("stream")))
        if not data.get("stream"):
            return chat_completion(content)
        stream = chat_stream(content=content, delay=self.chunk_delay)
        return stream if self.chunk_delay > 0 else _CachedStream(stream, self.cache)

    async def run(self, ex: Exchange) -> None:
        await self.pick(ex.request).run(ex)


@dataclass(frozen=True, slots=True)
class _CachedStream:
    """A chat stream whose framed body is kept per request body.

    Benchmarks send the same body over and over; building and encoding a
    200-chunk stream per request would make this server, not the code under
    test, the bottleneck on a 2-core machine.
    """

    stream: ChatStream
    cache: dict[bytes, bytes]
    limit: int = 256

    async def run(self, ex: Exchange) -> None:
        framed = self.cache.get(ex.request.body)
        if framed is None:
            if len(self.cache) >= self.limit:
                self.cache.clear()
            framed = self.cache[ex.request.body] = frame_chunks(self.stream.events(ex.request))
        await ex.send_whole_stream(framed)


_JSON_ROUTES = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})


@dataclass(frozen=True, slots=True)
class _TextCompletion:
    text: str
    stream: bool

    async def run(self, ex: Exchange) -> None:
        model = _model_of(ex.request, None)
        if not self.stream:
            body = wire.text_completion_body(
                self.text, model=model, usage=_usage_for(ex.request, self.text)
            )
            await ex.send_response(200, wire.dumps(body), [("Content-Type", "application/json")])
            return
        chunks = wire.text_completion_chunks(self.text, model=model)
        await ex.start_stream()
        await ex.send_chunks(*(wire.sse_event(c) for c in chunks), wire.SSE_DONE)
        await ex.end_stream()
