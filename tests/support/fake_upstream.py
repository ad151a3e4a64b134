"""A scripted HTTP/1.1 server on 127.0.0.1 that plays an OpenAI-compatible upstream.

It is written on a raw ``asyncio.Protocol`` rather than a web framework so a
test can control every byte: send headers then reset the connection, stall
mid-stream, trickle one byte at a time, or send deliberately broken SSE.

The server runs its own event loop in a daemon thread, so synchronous tests
and async tests (whose loop is separate) can share it::

    with FakeUpstream() as up:
        up.enqueue(status_storm(429, retry_after="1"), times=2)
        ...  # call up.url with any client
        assert up.requests[-1].header("authorization") == "Bearer sk-test"

Requests are answered, in order of precedence, by a queued behaviour whose
path matches (consumed), a permanent route, or the default handler, which
serves the OpenAI routes deterministically.

Run standalone for benchmarks::

    python -m tests.support.fake_upstream --port 8900 --chunks 200 --chunk-delay 0
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol, Self, cast

import msgspec

from tests.support import openai_wire as wire

# Bounds (STYLE: bounded everything). A request head past this is answered 431,
# a body past MAX_BODY 413; reading pauses while the buffer is over MAX_BUFFER.
MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
MAX_BUFFER = 1024 * 1024
STOP_TIMEOUT = 5.0

Headers = Sequence[tuple[str, str]] | Mapping[str, str]


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as received; ``headers`` keep their order and spelling."""

    method: str
    target: str
    path: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytes
    connection_id: int
    received_at: float

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def header(self, name: str) -> str | None:
        """The first value of a header, matched case-insensitively (RFC 9110 §5.1)."""
        lname = name.lower()
        return next((v for n, v in self.headers if n.lower() == lname), None)

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for n, v in self.headers if n.lower() == lname]

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


def _request_json(request: RecordedRequest) -> dict[str, Any]:
    """The body as a JSON object, or ``{}`` when it is not one (behaviours never fail on it)."""
    try:
        data = msgspec.json.decode(request.body) if request.body else {}
    except msgspec.DecodeError:
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- connection


class _PeerGone(Exception):
    """The peer closed or reset the connection; the exchange cannot continue."""


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Connection(asyncio.Protocol):
    """Buffers bytes from one socket and offers awaitable reads and flow-controlled writes."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.id = server.next_connection_id()
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.gone = asyncio.Event()  # peer sent FIN/RST, or the socket is closed
        self.lost = False
        self._wakeup = asyncio.Event()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._reading_paused = False

    # asyncio.Protocol callbacks -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but offer its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.server.on_open(self)
        self.task = asyncio.get_running_loop().create_task(self.server.serve(self))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._wakeup.set()
        if len(self.buf) > MAX_BUFFER and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True

    def eof_received(self) -> bool:
        self._mark_gone()
        return True  # keep our half open so a response in progress can still be sent

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._mark_gone()
        self._can_write.set()
        self.server.on_lost(self)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def _mark_gone(self) -> None:
        if not self.gone.is_set():
            self.server.on_peer_gone(self)
            self.gone.set()
        self._wakeup.set()

    # reads ----------------------------------------------------------------------
    async def fill(self) -> None:
        """Wait for more bytes; raise ``_PeerGone`` if none can come."""
        if self.gone.is_set():
            raise _PeerGone
        if self._reading_paused and self.transport is not None:
            # The parser asks for more, so the buffer is needed (a large body),
            # not merely piling up: MAX_BODY bounds it from here on.
            self.transport.resume_reading()
            self._reading_paused = False
        self._wakeup.clear()
        await self._wakeup.wait()
        if self.gone.is_set() and not self.buf:
            raise _PeerGone

    def take(self, n: int) -> bytes:
        data = bytes(self.buf[:n])
        del self.buf[:n]
        if self._reading_paused and len(self.buf) < MAX_BUFFER // 2 and self.transport:
            self.transport.resume_reading()
            self._reading_paused = False
        return data

    async def read_until(self, sep: bytes, limit: int) -> bytes:
        while (i := self.buf.find(sep)) < 0:
            if len(self.buf) > limit:
                raise _BadRequest(431, "request head too large")
            await self.fill()
        if i > limit:
            raise _BadRequest(431, "request head too large")
        return self.take(i + len(sep))

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self.fill()
        return self.take(n)

    # writes ---------------------------------------------------------------------
    async def write(self, data: bytes) -> None:
        if self.lost or self.transport is None or self.transport.is_closing():
            raise _PeerGone
        self.transport.write(data)
        if not self._can_write.is_set():
            await self._can_write.wait()
            if self.lost:
                raise _PeerGone

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def reset(self) -> None:
        """Close with a TCP RST: ``SO_LINGER`` on with a zero timeout (RFC 9293 §3.10.7.1)."""
        if self.transport is None or self.transport.is_closing():
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


# --------------------------------------------------------------------------- HTTP/1.1 parsing


async def _read_request(conn: _Connection) -> RecordedRequest | None:
    """Parse one request (RFC 9112 §2-§7); ``None`` if the peer closed between requests."""
    while not conn.buf:
        try:
            await conn.fill()
        except _PeerGone:
            return None
    while conn.buf.startswith(b"\r\n"):  # RFC 9112 §2.2: ignore empty lines before a request
        conn.take(2)
        if not conn.buf:
            return await _read_request(conn)
    head = await conn.read_until(b"\r\n\r\n", MAX_HEAD)
    lines = head[:-4].decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise _BadRequest(400, "malformed request line") from None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _BadRequest(400, f"malformed header line {line!r}")
        headers.append((name, value.strip(" \t")))
    received_at = time.monotonic()
    fields = {n.lower(): v for n, v in headers}
    if fields.get("expect", "").lower() == "100-continue" and _has_body(fields):
        # RFC 9110 §10.1.1: tell the client to go on sending the body.
        await conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = await _read_body(conn, fields)
    path = target.partition("?")[0]
    return RecordedRequest(method, target, path, version, headers, body, conn.id, received_at)


def _has_body(fields: Mapping[str, str]) -> bool:
    return "transfer-encoding" in fields or fields.get("content-length", "0") != "0"


async def _read_body(conn: _Connection, fields: Mapping[str, str]) -> bytes:
    # RFC 9112 §6.3: Transfer-Encoding wins over Content-Length.
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return await _read_chunked(conn)
    length = fields.get("content-length")
    if length is None:
        return b""
    if not length.isdigit():
        raise _BadRequest(400, "invalid Content-Length")
    if int(length) > MAX_BODY:
        raise _BadRequest(413, "request body too large")
    return await conn.read_exactly(int(length))


async def _read_chunked(conn: _Connection) -> bytes:
    """Chunked transfer coding (RFC 9112 §7.1); extensions and trailers are read and dropped."""
    body = bytearray()
    while True:
        size_line = await conn.read_until(b"\r\n", 4096)
        size_text = size_line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadRequest(400, "invalid chunk size") from None
        if size == 0:
            while await conn.read_until(b"\r\n", MAX_HEAD) != b"\r\n":
                pass  # trailer fields
            return bytes(body)
        if len(body) + size > MAX_BODY:
            raise _BadRequest(413, "request body too large")
        body += await conn.read_exactly(size)
        if await conn.read_exactly(2) != b"\r\n":
            raise _BadRequest(400, "chunk not followed by CRLF")


# --------------------------------------------------------------------------- exchange


_REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
    302: "Found", 303: "See Other", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    409: "Conflict", 413: "Content Too Large", 422: "Unprocessable Content",
    429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}  # fmt: skip


def frame_chunks(pieces: Sequence[bytes]) -> bytes:
    """Chunked transfer coding of each non-empty piece (an empty one would end the body)."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)


def _header_list(headers: Headers | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(n), str(v)) for n, v in items]


class Exchange:
    """One request and the means to answer it; what every behaviour receives."""

    def __init__(self, conn: _Connection, request: RecordedRequest) -> None:
        self.request = request
        self._conn = conn
        conn_header = (request.header("connection") or "").lower()
        # RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 is closed here.
        self.keep_alive = request.http_version == "HTTP/1.1" and "close" not in conn_header
        self.finished = False  # the connection was closed or reset by the behaviour

    @property
    def peer_gone(self) -> bool:
        return self._conn.gone.is_set()

    def _head(self, status: int, headers: list[tuple[str, str]], reason: str | None) -> bytes:
        if not self.keep_alive and not any(n.lower() == "connection" for n, _ in headers):
            headers = [*headers, ("Connection", "close")]
        text = f"HTTP/1.1 {status} {reason if reason is not None else _REASONS.get(status, '')}"
        lines = [text, *(f"{n}: {v}" for n, v in headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def send_response(
        self,
        status: int,
        body: bytes = b"",
        headers: Headers | None = None,
        reason: str | None = None,
    ) -> None:
        """A complete response framed by ``Content-Length`` unless ``headers`` frame it."""
        hlist = _header_list(headers)
        names = {n.lower() for n, _ in hlist}
        if "content-length" not in names and "transfer-encoding" not in names:
            hlist.append(("Content-Length", str(len(body))))
        if self.request.method == "HEAD":
            body = b""
        await self._conn.write(self._head(status, hlist, reason) + body)

    async def start_stream(
        self,
        status: int = 200,
        headers: Headers | None = None,
        content_type: str = "text/event-stream",
    ) -> None:
        """Send a head for a ``Transfer-Encoding: chunked`` body (RFC 9112 §7.1)."""
        await self._conn.write(self._stream_head(status, headers, content_type))

    def _stream_head(self, status: int, headers: Headers | None, content_type: str) -> bytes:
        hlist = [("Content-Type", content_type), ("Cache-Control", "no-cache")]
        hlist += [*_header_list(headers), ("Transfer-Encoding", "chunked")]
        return self._head(status, hlist, None)

    async def send_chunks(self, *pieces: bytes) -> None:
        """Send each non-empty piece as one chunk, all in a single write."""
        if out := frame_chunks(pieces):
            await self._conn.write(out)

    async def send_whole_stream(self, framed_body: bytes) -> None:
        """Head, an already framed chunked body and its last chunk, in one write."""
        head = self._stream_head(200, None, "text/event-stream")
        await self._conn.write(head + framed_body + b"0\r\n\r\n")

    async def end_stream(self) -> None:
        await self._conn.write(b"0\r\n\r\n")

    async def write_raw(self, data: bytes) -> None:
        await self._conn.write(data)

    async def sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds; return ``False`` early if the peer goes away meanwhile."""
        if delay <= 0:
            return not self.peer_gone
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._conn.gone.wait(), delay)
        return not self.peer_gone

    async def wait_peer_gone(self) -> None:
        await self._conn.gone.wait()

    def close(self) -> None:
        """Close gracefully (FIN) after anything already written."""
        self.finished = True
        self._conn.close()

    def reset(self) -> None:
        """Abort with a TCP RST."""
        self.finished = True
        self._conn.reset()


class Behaviour(Protocol):
    """Anything that can answer one request."""

    async def run(self, ex: Exchange) -> None: ...


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
    hlist = _header_list(headers)
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
    hlist = _header_list(headers)
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
    """Close (FIN) right after reading the request, sending nothing."""

    async def run(self, ex: Exchange) -> None:
        ex.close()


def refuse() -> Refuse:
    return Refuse()


@dataclass(frozen=True, slots=True)
class ResetBeforeHeaders:
    async def run(self, ex: Exchange) -> None:
        ex.reset()


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
class ResetMidStream:
    after_events: int
    source: ChatStream = field(default_factory=_default_source)

    async def run(self, ex: Exchange) -> None:
        await ex.start_stream()
        await ex.send_chunks(*self.source.events(ex.request)[: self.after_events])
        ex.reset()


def reset_mid_stream(after_events: int = 2, source: ChatStream | None = None) -> ResetMidStream:
    """Send the first ``after_events`` events of ``source`` (a 32-word chat stream), then RST."""
    return ResetMidStream(after_events, source or _default_source())


@dataclass(frozen=True, slots=True)
class Stall:
    after_events: int
    source: ChatStream = field(default_factory=_default_source)

    async def run(self, ex: Exchange) -> None:
        await ex.start_stream()
        await ex.send_chunks(*self.source.events(ex.request)[: self.after_events])
        await ex.wait_peer_gone()
        ex.close()


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


# --------------------------------------------------------------------------- server core


@dataclass
class _Queued:
    behaviour: Behaviour
    path: str | None
    remaining: int


def _path_matches(pattern: str, path: str) -> bool:
    return path.startswith(pattern[:-1]) if pattern.endswith("*") else path == pattern


class _Server:
    """State shared between the loop thread and the test thread, guarded by one condition."""

    def __init__(self, default: Behaviour, *, record: bool = True) -> None:
        self.default = default
        self.record = record  # off for standalone benchmark runs, which would grow forever
        self.cond = threading.Condition()
        self.async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.queue: list[_Queued] = []
        self.routes: list[tuple[str, str, Behaviour]] = []
        self.requests: list[RecordedRequest] = []
        self.closed_at: dict[int, float] = {}
        self.connections: dict[int, _Connection] = {}
        self.opened = 0
        self.closed = 0
        self._ids = 0
        self.errors: list[Exception] = []

    def notify(self) -> None:
        """Wake blocked and async waiters; call with ``cond`` held."""
        self.cond.notify_all()
        for loop, event in self.async_waiters:
            with contextlib.suppress(RuntimeError):  # that loop may be closed already
                loop.call_soon_threadsafe(event.set)

    def next_connection_id(self) -> int:
        self._ids += 1
        return self._ids

    def on_open(self, conn: _Connection) -> None:
        with self.cond:
            self.connections[conn.id] = conn
            self.opened += 1
            self.notify()

    def on_peer_gone(self, conn: _Connection) -> None:
        with self.cond:
            self.closed_at.setdefault(conn.id, time.monotonic())
            self.notify()

    def on_lost(self, conn: _Connection) -> None:
        with self.cond:
            if self.connections.pop(conn.id, None) is not None:
                self.closed += 1
            self.notify()

    def pick(self, req: RecordedRequest) -> Behaviour:
        with self.cond:
            if self.record:
                self.requests.append(req)
                self.notify()
            for entry in self.queue:
                if entry.path is None or _path_matches(entry.path, req.path):
                    entry.remaining -= 1
                    if entry.remaining <= 0:
                        self.queue.remove(entry)
                    return entry.behaviour
            for method, pattern, behaviour in self.routes:
                if method.upper() == req.method and _path_matches(pattern, req.path):
                    return behaviour
        return self.default

    async def serve(self, conn: _Connection) -> None:
        try:
            while True:
                req = await _read_request(conn)
                if req is None:
                    break
                ex = Exchange(conn, req)
                await self.pick(req).run(ex)
                if ex.finished or not ex.keep_alive:
                    break
        except _BadRequest as exc:
            body = wire.dumps(wire.error_body(str(exc)))
            with contextlib.suppress(_PeerGone):
                await conn.write(_bad_request_bytes(exc.status, body))
        except _PeerGone:
            pass
        except Exception as exc:
            # A behaviour raised: keep it for the test to see (``FakeUpstream.errors``)
            # and reset the connection so the client fails fast instead of hanging.
            with self.cond:
                self.errors.append(exc)
                self.notify()
            traceback.print_exception(exc, file=sys.stderr)
            conn.reset()
        finally:
            conn.close()


def _bad_request_bytes(status: int, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _close_all(server: asyncio.Server, state: _Server) -> None:
    """Stop listening, abort every connection and wait for their tasks."""
    server.close()
    with state.cond:
        conns = list(state.connections.values())
    tasks = [c.task for c in conns if c.task is not None]
    for conn in conns:
        if conn.transport is not None:
            conn.transport.abort()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await server.wait_closed()
    await asyncio.sleep(0)  # let connection_lost callbacks scheduled by abort() run


# --------------------------------------------------------------------------- public server


class FakeUpstream:
    """The scripted upstream; see the module docstring."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, default: Behaviour | None = None
    ) -> None:
        self.host = host
        self.port = port
        self._state = _Server(default or DefaultHandler())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # lifecycle ------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("FakeUpstream already started")
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(STOP_TIMEOUT):
            raise RuntimeError("FakeUpstream did not start")
        if self._error is not None:
            self._thread.join(STOP_TIMEOUT)
            raise RuntimeError("FakeUpstream could not listen") from self._error

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._server is not None:
            future = asyncio.run_coroutine_threadsafe(_close_all(self._server, self._state), loop)
            with contextlib.suppress(TimeoutError):
                future.result(STOP_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT)
        self._thread = self._loop = self._server = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(self._listen())
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _listen(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: _Connection(self._state), self.host, self.port, reuse_address=True
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        # Starting only spawns a thread and binds a socket: quick enough not to
        # need handing off from the caller's loop.
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Stopping aborts every connection from the server's own loop and joins
        # its thread; nothing there waits on the caller's loop, so a short
        # blocking call is safe here.
        self.stop()

    # scripting ------------------------------------------------------------------
    def enqueue(self, behaviour: Behaviour, *, path: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` requests matching ``path`` (any if ``None``) with this."""
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._state.cond:
            self._state.queue.append(_Queued(behaviour, path, times))

    def route(self, method: str, path: str, behaviour: Behaviour) -> None:
        """Answer every ``method path`` with this (exact path, or a prefix ending in "*")."""
        with self._state.cond:
            self._state.routes.append((method.upper(), path, behaviour))

    def reset(self) -> None:
        """Forget queued behaviours, routes and records (connection counters are kept)."""
        with self._state.cond:
            self._state.queue.clear()
            self._state.routes.clear()
            self._state.requests.clear()
            self._state.closed_at.clear()
            self._state.errors.clear()

    # observation ----------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.cond:
            return list(self._state.requests)

    @property
    def errors(self) -> list[Exception]:
        """Exceptions raised by behaviours (each also reset its connection)."""
        with self._state.cond:
            return list(self._state.errors)

    @property
    def connections_opened(self) -> int:
        return self._state.opened

    @property
    def connections_closed(self) -> int:
        return self._state.closed

    @property
    def open_connections(self) -> int:
        with self._state.cond:
            return self._state.opened - self._state.closed

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``n`` requests were recorded; raise ``TimeoutError`` if not."""
        with self._state.cond:
            if not self._state.cond.wait_for(lambda: len(self._state.requests) >= n, timeout):
                got = len(self._state.requests)
                raise TimeoutError(f"expected {n} requests within {timeout}s, got {got}")
            return list(self._state.requests)

    def wait_for_close(self, connection_id: int, timeout: float) -> float | None:
        """When connection ``connection_id`` was seen closed (``time.monotonic()``), or ``None``.

        The time is when the peer's FIN or RST arrived, or when this server closed
        the connection itself, whichever came first.
        """
        with self._state.cond:
            self._state.cond.wait_for(lambda: connection_id in self._state.closed_at, timeout)
            return self._state.closed_at.get(connection_id)

    # The async waiters take ``timeout`` like their blocking twins, so a test can
    # swap one for the other; hence the ASYNC109 exemptions.
    async def wait_for_requests_async(
        self,
        n: int,
        timeout: float = 5.0,
    ) -> list[RecordedRequest]:
        """``wait_for_requests`` for async tests: waits without blocking the caller's loop."""
        state = self._state
        if not await self._wait_async(lambda: len(state.requests) >= n, timeout):
            raise TimeoutError(
                f"expected {n} requests within {timeout}s, got {len(state.requests)}"
            )
        return self.requests

    async def wait_for_close_async(
        self,
        connection_id: int,
        timeout: float,
    ) -> float | None:
        """``wait_for_close`` for async tests."""
        await self._wait_async(lambda: connection_id in self._state.closed_at, timeout)
        with self._state.cond:
            return self._state.closed_at.get(connection_id)

    async def _wait_async(self, predicate: Callable[[], bool], timeout: float) -> bool:
        state = self._state
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with state.cond:
            state.async_waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    with state.cond:
                        if predicate():
                            return True
                        waiter[1].clear()
                    await waiter[1].wait()
        except TimeoutError:
            return False
        finally:
            with state.cond:
                state.async_waiters.remove(waiter)


# --------------------------------------------------------------------------- standalone


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--chunks", type=int, default=None, help="content chunks per stream")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between chunks")
    return parser.parse_args(argv)


async def _serve_forever(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    handler = DefaultHandler(chunks=args.chunks, chunk_delay=args.chunk_delay)
    state = _Server(handler, record=False)
    server = await loop.create_server(
        lambda: _Connection(state), args.host, args.port, reuse_address=True, backlog=1024
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = server.sockets[0].getsockname()[1]
    print(f"READY http://{args.host}:{port}", flush=True)
    await stop.wait()
    await _close_all(server, state)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve_forever(args))
    else:
        uvloop.run(_serve_forever(args))


if __name__ == "__main__":
    main()
