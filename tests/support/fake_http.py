"""The protocol part of the fake upstream: a raw HTTP/1.1 server on an ``asyncio.Protocol``.

It reads requests byte by byte (RFC 9112), records each one, and hands it with the means
to answer (an ``Exchange``) to the ``Behaviour`` picked for it: a queued one whose path
matches, a permanent route, or the server's default. What to answer lives in
``fake_behaviours``; the thread that runs it for a test, in ``fake_upstream``.

It knows nothing of OpenAI beyond the shape of its own 400/413/431 error body.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import msgspec

from tests.support import openai_wire as wire

# What ``fake_upstream`` re-exports. The server machinery (``ServerState``, ``listen``,
# ``close_all``, ``header_list``) serves that module and ``fake_behaviours`` only.
__all__ = [
    "MAX_BODY",
    "MAX_BUFFER",
    "MAX_HEAD",
    "Behaviour",
    "Exchange",
    "Headers",
    "RecordedRequest",
    "frame_chunks",
]

# Bounds (STYLE: bounded everything). A request head past this is answered 431,
# a body past MAX_BODY 413; reading pauses while the buffer is over MAX_BUFFER.
MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
MAX_BUFFER = 1024 * 1024

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


# --------------------------------------------------------------------------- connection


class _PeerGone(Exception):
    """The peer closed or reset the connection; the exchange cannot continue."""


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Connection(asyncio.Protocol):
    """Buffers bytes from one socket and offers awaitable reads and flow-controlled writes."""

    def __init__(self, server: ServerState) -> None:
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


def header_list(headers: Headers | None) -> list[tuple[str, str]]:
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
        hlist = header_list(headers)
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
        hlist += [*header_list(headers), ("Transfer-Encoding", "chunked")]
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


# --------------------------------------------------------------------------- server core


@dataclass
class _Queued:
    behaviour: Behaviour
    path: str | None
    remaining: int


def _path_matches(pattern: str, path: str) -> bool:
    return path.startswith(pattern[:-1]) if pattern.endswith("*") else path == pattern


class ServerState:
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

    # scripting, from the test's thread ----------------------------------------------
    def enqueue(self, behaviour: Behaviour, path: str | None, times: int) -> None:
        with self.cond:
            self.queue.append(_Queued(behaviour, path, times))

    def route(self, method: str, path: str, behaviour: Behaviour) -> None:
        with self.cond:
            self.routes.append((method.upper(), path, behaviour))

    def forget(self) -> None:
        """Forget queued behaviours, routes and records (connection counters are kept)."""
        with self.cond:
            self.queue.clear()
            self.routes.clear()
            self.requests.clear()
            self.closed_at.clear()
            self.errors.clear()

    # serving, on the loop's thread -------------------------------------------------
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


async def close_all(server: asyncio.Server, state: ServerState) -> None:
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


async def listen(state: ServerState, host: str, port: int, *, backlog: int = 100) -> asyncio.Server:
    """Listen on ``host:port`` from the running loop; ``state`` answers every connection."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: _Connection(state), host, port, reuse_address=True, backlog=backlog
    )
