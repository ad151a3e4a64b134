"""One request on a lean connection, from its send to the end of its body.

``httptools``' response parser (llhttp, in C) is fed every byte the connection receives.
Its body callback is the ``append`` of a list: the parser calls C, not Python, once per
HTTP chunk, and a ``read()`` joins everything that arrived since the last one into one
``bytes`` (aiohttp's reader runs four Python calls per chunk and a join per read; that was
81% of the bare passthrough's streaming CPU, bench/README.md).

Its phases, deadlines and abort are every exchange's (``_exchange.Exchange``): while
``sending`` (connect, pool wait, request, response head) an abort or the first-byte
deadline cancels the sending task; once the head is in, it is the body source, and an
abort or an expired read interrupts the read instead.
"""

from __future__ import annotations

import asyncio
import time
import zlib

import httptools

from .._abort import AbortSignal
from .._deadlines import Deadlines
from .._errors import NetworkError, TimeoutError
from .._headers import Headers
from .._http1 import ContentDecoder
from .._redact import redact_url
from .._request import Request
from ._exchange import Exchange
from ._lean_pool import Connection

__all__ = ["HIGH_WATER", "MAX_HEAD", "LeanExchange"]

# Unread body bytes past which the socket is not read until the reader catches up: with
# one socket read (up to 256 KiB under uvloop) on top, the most a body can hold.
HIGH_WATER = 256 * 1024
# A response head longer than this is refused (aiohttp's own limits are 8 KiB a line).
MAX_HEAD = 64 * 1024
# Responses without a body whatever their headers say (RFC 9110 §6.4.1).
_NO_BODY_STATUSES = frozenset({204, 304})


class _HeadOnly(Exception):
    """Raised from the parser's head callback to stop at a HEAD response's head: llhttp
    cannot be told that a response has no body, and would wait for its Content-Length."""


class _HeadTooLarge(Exception):
    """The response's header fields passed ``MAX_HEAD``."""


class _Unasked(Exception):
    """A second response began on the connection with no request for it."""


def _what(request: Request) -> str:
    return f"{request.method} {redact_url(request.url)}"


class LeanExchange(Exchange):
    """The parser's callbacks, the request's deadlines and abort, and the body source."""

    __slots__ = (
        "_conn",
        "_decoder",
        "_ended",
        "_failure",
        "_field_bytes",
        "_fields",
        "_framed",
        "_head_done",
        "_head_size",
        "_interim",
        "_keep",
        "_parser",
        "_parts",
        "_paused",
        "_reason",
        "_unread",
        "_waiter",
        "headers",
        "on_body",
        "status",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        request: Request,
        signal: AbortSignal | None,
        watch: Deadlines[LeanExchange],
        idle: float | None,
    ) -> None:
        super().__init__(loop, request, signal, watch, idle)
        self._conn: Connection | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._head_done: asyncio.Future[None] | None = None
        self._parts: list[bytes] = []
        self.on_body = self._parts.append  # the parser's body callback, called from C
        self._fields: list[tuple[str, str]] = []
        self._reason = b""
        self._head_size = 0  # bytes fed before the head was complete
        self._field_bytes = 0  # the header fields' size, as on the wire
        self.status = 0
        self.headers: Headers | None = None  # set once the final response's head is in
        self._interim = False
        self._framed = False  # Content-Length or Transfer-Encoding: the body has an end
        self._ended = False  # the whole message has arrived
        self._keep = False
        self._failure: str | None = None  # why the response cannot be read on
        self._decoder: ContentDecoder | None = None
        self._unread = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def reason(self) -> str:
        return self._reason.decode("latin-1")

    # --------------------------------------------------------------- the connection

    def attach(self, conn: Connection) -> None:
        """Use ``conn`` for this request: from now on it feeds this exchange."""
        self._conn = conn
        conn.occupant = self
        # A parser per response (163 ns): no state carried over from the last response.
        self._parser = httptools.HttpResponseParser(self)
        self._head_done = self._loop.create_future()

    async def head(self) -> bool:
        """Wait for the response head; False when the connection failed first."""
        done = self._head_done
        if done is not None and not done.done():
            await done
        return self.headers is not None

    def failure(self) -> str:
        return self._failure or "no response"

    def feed(self, data: bytes) -> None:
        """Bytes from the connection (``Occupant``)."""
        parser = self._parser
        assert parser is not None
        if self.headers is None:
            self._head_size += len(data)
        else:
            self._unread += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadOnly):
                self._ended, self._keep = True, False  # see _HeadOnly: not reused
            elif isinstance(exc.__context__, _HeadTooLarge):
                self._break(f"the response head is over {MAX_HEAD // 1024} KiB")
            elif not self._ended:
                self._break(f"invalid response: {exc.__context__ or exc}")
            else:  # bytes after the response (_Unasked): the connection is not reused
                self._keep = False
        except httptools.HttpParserUpgrade:
            self._break("the server switched protocols, which was not asked for")
        except httptools.HttpParserError as exc:
            if not self._ended:
                self._break(f"invalid response: {exc}")
            self._keep = False
        if self._ended:
            self._let_go()
        elif self._failure is not None:
            pass
        elif self.headers is None:
            # Bytes fed while no head is complete: the parser holds a field it has not
            # finished, however long, so this bounds it where on_header cannot.
            if self._head_size > MAX_HEAD:
                self._break(f"the response head is over {MAX_HEAD // 1024} KiB")
        elif self._unread > HIGH_WATER and not self._paused and self._conn is not None:
            self._paused = True
            self._conn.pause_reading()
        done = self._head_done
        if self.headers is not None and done is not None and not done.done():
            done.set_result(None)
        self._wake()

    def lost(self, exc: BaseException | None) -> None:
        """The connection closed (``Occupant``)."""
        self._conn = None
        if self._ended:
            return
        request = self._request
        if (
            self.headers is not None
            and not self._framed
            and self.status not in _NO_BODY_STATUSES
            and request.method != "HEAD"
        ):
            # RFC 9112 §6.3 (8): no length and no chunked coding: the body ends with the
            # connection (llhttp reads to the end, but has no call here to be told of it).
            self._ended, self._keep = True, False
        else:
            self._failure = (
                "the server closed the connection"
                if exc is None
                else f"{type(exc).__name__}: {exc}"
            )
        done = self._head_done
        if done is not None and not done.done():
            done.set_result(None)
        self._wake()

    def _break(self, detail: str) -> None:
        """The response cannot be read on: ``send`` or the next ``read`` raises."""
        self._failure = detail
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        done = self._head_done
        if done is not None and not done.done():
            done.set_result(None)

    def _let_go(self) -> None:
        """The whole response has arrived: the connection goes back to the pool now,
        whether or not the body has been read (it is all held here)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._keep:
                conn.release()
            else:
                conn.close()

    # --------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        if self.headers is not None:
            raise _Unasked

    def on_status(self, reason: bytes) -> None:
        self._reason += reason  # llhttp may hand over a status line in pieces

    def on_header(self, name: bytes, value: bytes) -> None:
        self._field_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._field_bytes > MAX_HEAD:
            raise _HeadTooLarge
        lower = name.lower()
        if lower == b"content-length" or lower == b"transfer-encoding":
            self._framed = True
        elif lower == b"content-encoding":
            self._decoder = ContentDecoder.for_coding(value.decode("latin-1"))
        self._fields.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        if status < 200:
            # RFC 9110 §15.2: an interim response (100 Continue, 103 Early Hints) comes
            # before the answer; llhttp parses it as a message of its own.
            self._fields, self._reason, self._interim = [], b"", True
            self._field_bytes = 0
            self._framed, self._decoder = False, None
            return
        self.status = status
        self.headers = Headers._trusted(self._fields)
        if self._request.method == "HEAD":
            raise _HeadOnly

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        parser = self._parser
        assert parser is not None
        self._ended = True
        self._keep = parser.should_keep_alive()

    # --------------------------------------------------------------- sending

    def abandon(self) -> None:
        """``send`` failed: nothing will be read, and the connection is closed."""
        self.phase = "over"
        if self._signal is not None:
            self._signal.remove_listener(self.handle)
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def received(self) -> None:
        """The response head is in: from now on this is its body source."""
        self.phase, self.stop_reason = "reading", None
        signal = self._signal
        if signal is not None and signal._aborted:
            self.interrupt("abort")
        elif self._ended and not self._parts:
            self._finish()  # no body at all: nothing to read, nothing to free

    # --------------------------------------------------------------- the body

    async def read(self) -> bytes:
        while True:
            if self.stop_reason is not None:
                self._raise_failure()
            parts = self._parts
            decoder = self._decoder
            if parts or (decoder is not None and decoder.pending):
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                parts.clear()
                self._unread = 0
                if self._paused:
                    self._paused = False
                    if self._conn is not None:
                        self._conn.resume_reading()
                if decoder is not None:
                    data = self._decode(decoder, data)
                if self._ended and (decoder is None or not decoder.pending):
                    # The last of it: the caller stops here without another read.
                    self._finish()
                if data:
                    return data
                continue
            if self.phase == "over":
                return b""
            if self._ended:
                self._finish()
                return b""
            if self._failure is not None:
                self._finish()
                raise NetworkError(
                    f"the connection broke while reading the body of {_what(self._request)}: "
                    f"{self._failure}",
                    phase="body",
                )
            await self._wait()

    def _decode(self, decoder: ContentDecoder, data: bytes) -> bytes:
        try:
            return decoder.feed(data)
        except zlib.error as exc:
            self._finish()
            raise NetworkError(
                f"the body of {_what(self._request)} is not valid "
                f"{self.headers.get('content-encoding') if self.headers else ''}: {exc}",
                phase="body",
            ) from None

    async def _wait(self) -> None:
        watch = self._watch
        if watch is not None:
            due = self._deadline
            if self._idle is not None:
                idle_due = time.monotonic() + self._idle
                if due is None or idle_due < due:
                    due = idle_due
            assert due is not None  # a watch is kept only when one of the two is set
            watch.add(self, due)
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
            if watch is not None:
                watch.discard(self)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def interrupt(self, kind: str) -> None:
        if self.phase != "reading":
            return
        self.stop_reason = kind
        self._parts.clear()
        self._finish()
        self._wake()

    def _raise_failure(self) -> None:
        kind = self.stop_reason
        if kind == "abort" and self._signal is not None:
            raise self._signal.error() from None
        if kind == "idle":
            raise TimeoutError(
                f"no body data for {self._idle:g} s (idle timeout): {_what(self._request)}",
                phase="idle",
            ) from None
        if kind == "total":
            raise TimeoutError(
                f"the total timeout ran out while reading the body: {_what(self._request)}",
                phase="total",
            ) from None
        raise NetworkError(f"the body of {_what(self._request)} was closed", phase="body")

    def _finish(self) -> None:
        """Over: the listener goes, and a connection still in use is closed (a response
        read to its end has given its connection back already, in ``feed``)."""
        if self.phase == "over":
            return
        self.phase = "over"
        if self._signal is not None:
            self._signal.remove_listener(self.handle)
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def aclose(self) -> None:
        """Stop early: a connection still in use is closed (a half-read body cannot be
        reused)."""
        if self.stop_reason is None:
            self.stop_reason = "closed"
        self._parts.clear()
        self._finish()
