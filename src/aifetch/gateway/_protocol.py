"""The HTTP/1.1 connection: uvicorn's httptools protocol, bounded in size, time and number.

uvicorn bounds none of these for httptools: a header flood is buffered without limit, a
connection that never sends a byte is kept forever, and connections are accepted until
the process runs out of file descriptors, after which nobody gets an answer. Here:

- **Head size**: a request line and header fields past ``MAX_HEAD_BYTES`` get 431
  (RFC 6585 §5) and the connection is closed.
- **Request time**: the first request of a connection must arrive whole within
  ``limits.request_timeout`` of the connection being *accepted*; a later request within
  that time of its first byte. Past it the caller gets 408 and the connection is closed
  (a connection that sent nothing at all is just closed: RFC 9112 §9.5 lets a server
  close an idle connection, and there is no request to answer). Between requests an idle
  keep-alive connection is uvicorn's to close, after ``timeout_keep_alive`` (5 s): that is
  shorter, and a pooled SDK connection must not be cut while it waits for its next call.
- **Number**: at most ``limits.max_connections`` open connections per process (lowered
  to fit the file-descriptor limit; see ``connection_cap``). A connection accepted past
  the cap makes room by closing the connection that has been idle longest: first one
  that has not finished its first request head (a silent or slow stranger), then a
  keep-alive connection between requests. A connection with a request in progress is
  never closed for room; when every connection has one, the newcomer gets 503
  ``too_many_connections``. So a flood of silent sockets costs a bounded number of file
  descriptors, and callers who send requests still get answers.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import weakref
from http import HTTPStatus

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from . import _codes as codes
from ._app import GatewayApp
from ._errors import GatewayError

__all__ = [
    "MAX_CONNECTIONS_ATTR",
    "MAX_HEAD_BYTES",
    "REQUEST_TIMEOUT_ATTR",
    "BoundedHeadProtocol",
    "begin_shutdown",
    "connection_cap",
]

log = logging.getLogger("aifetch.gateway")

# A request head (request line and header fields) past this is refused with 431.
MAX_HEAD_BYTES = 64 * 1024
# Where uvicorn_config() leaves the limits for the protocol (attributes of uvicorn's
# Config survive the pickling that --workers does; a class made per config would not).
REQUEST_TIMEOUT_ATTR = "aifetch_request_timeout"
MAX_CONNECTIONS_ATTR = "aifetch_max_connections"

# File descriptors kept back from caller connections: the listening socket, the event
# loop's own, log files, the config, DNS lookups, a metrics file (measured: an idle
# gateway holds about 20).
FD_RESERVE = 64
# Below this many caller connections a gateway is of little use: the cap never goes lower.
_MIN_CONNECTIONS = 8


def connection_cap(configured: int, upstream_pools: int) -> tuple[int, int | None]:
    """``(cap, fd_limit)``: ``configured`` lowered so that caller connections, the
    upstream pools (``upstream_pools`` connections) and a reserve fit in the soft
    ``RLIMIT_NOFILE``. ``fd_limit`` is that limit when it lowered the cap, else ``None``.
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured, None
    room = max(_MIN_CONNECTIONS, soft - FD_RESERVE - upstream_pools)
    return (room, soft) if room < configured else (configured, None)


class _Connections:
    """The open connections of one server, and which of them may be closed for room.

    ``fresh``: accepted, first request head not finished. ``idle``: between requests.
    Both keep insertion order, so the first entry has waited longest. A connection with a
    request in progress is in neither.
    """

    __slots__ = ("cap", "fresh", "idle", "open", "warned")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open: set[BoundedHeadProtocol] = set()
        self.fresh: dict[BoundedHeadProtocol, None] = {}
        self.idle: dict[BoundedHeadProtocol, None] = {}
        self.warned = False

    def admit(self, conn: BoundedHeadProtocol) -> bool:
        """Count ``conn`` in; False when the cap is reached and nothing could be closed."""
        if len(self.open) >= self.cap:
            victim = _first(self.fresh)
            if victim is None:
                victim = _first(self.idle)
            self._warn_once(victim is not None)
            if victim is None:
                return False
            victim.close_for_room()
        self.open.add(conn)
        self.fresh[conn] = None
        return True

    def busy(self, conn: BoundedHeadProtocol) -> None:
        self.fresh.pop(conn, None)
        self.idle.pop(conn, None)

    def waiting(self, conn: BoundedHeadProtocol) -> None:
        if conn in self.open:
            self.idle[conn] = None

    def gone(self, conn: BoundedHeadProtocol) -> None:
        self.open.discard(conn)
        self.busy(conn)

    def _warn_once(self, made_room: bool) -> None:
        if self.warned:
            return
        self.warned = True
        then = (
            "closing the longest-idle connections to make room"
            if made_room
            else "every connection has a request in progress: refusing new ones with 503"
        )
        log.warning(
            "open connections reached limits.max_connections (%d): %s "
            "(logged once; raise the limit, or the file-descriptor limit, for more)",
            self.cap,
            then,
        )


def _first(entries: dict[BoundedHeadProtocol, None]) -> BoundedHeadProtocol | None:
    for conn in entries:
        return conn
    return None


# Apps whose graceful shutdown has begun.
_closing_apps: weakref.WeakSet[GatewayApp] = weakref.WeakSet()


def begin_shutdown(app: object) -> None:
    """Begin the graceful shutdown of the gateway app behind ``app`` (through any ASGI
    middleware uvicorn wrapped it in), once: new calls get 503, and the streams still
    running after ``server.shutdown_grace`` end with an error event."""
    while not isinstance(app, GatewayApp) and hasattr(app, "app"):
        app = app.app
    if isinstance(app, GatewayApp) and app not in _closing_apps:
        _closing_apps.add(app)
        app.begin_shutdown()


# One book per uvicorn server (its ServerState), made by its first connection.
_books: weakref.WeakKeyDictionary[ServerState, _Connections] = weakref.WeakKeyDictionary()


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with each request bounded in size and in time, and
    the connections of a server bounded in number (see the module docstring).

    - The head to ``MAX_HEAD_BYTES``: bytes are counted per read while a head is
      incomplete, so the bound holds to within one read; a read that completes the head
      may carry body bytes and is not refused.
    - The request to ``limits.request_timeout``: one timer from the accept to the end of
      the first request, and for a later request from its first read to its end. A later
      request that arrives whole in one read, the usual case, never makes a timer.
    """

    _in_head = True
    _head_bytes = 0
    _body_pending = False
    _request_timer: asyncio.TimerHandle | None = None
    _book: _Connections | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cap: int | None = getattr(self.config, MAX_CONNECTIONS_ATTR, None)
        if cap is not None:
            book = _books.get(self.server_state)
            if book is None:
                book = _books[self.server_state] = _Connections(cap)
            if not book.admit(self):
                message = "The gateway has too many open connections; try again shortly."
                self._answer_and_close(codes.TOO_MANY_CONNECTIONS(message))
                return
            self._book = book
        # The first request's time starts now: a connection that sends nothing is closed.
        self._start_request_timer()

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            super().data_received(data)
        else:
            self._head_bytes += len(data)
            super().data_received(data)
            if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
                self._refuse_head()
                return
        if self._request_timer is None and (
            self._body_pending or (self._in_head and self._head_bytes)
        ):
            self._start_request_timer()

    def on_headers_complete(self) -> None:
        self._in_head, self._body_pending = False, True
        if self._book is not None:
            self._book.busy(self)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next request on this connection starts from here.
        self._in_head, self._head_bytes, self._body_pending = True, 0, False
        self._stop_request_timer()

    def on_response_complete(self) -> None:
        next_queued = bool(self.pipeline)  # uvicorn starts it in the call below
        super().on_response_complete()
        if self._book is not None and not next_queued and not self.transport.is_closing():
            self._book.waiting(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_request_timer()
        if self._book is not None:
            self._book.gone(self)
        super().connection_lost(exc)

    def shutdown(self) -> None:
        # uvicorn calls this on every connection when its graceful shutdown starts, in
        # each --workers process as in a single one: the app's streams must end with
        # their error event there too, not be cut at uvicorn's deadline.
        begin_shutdown(self.app)
        super().shutdown()

    def close_for_room(self) -> None:
        """Closed to make room for a new connection (it was idle: nothing is cut)."""
        if self._book is not None:
            self._book.gone(self)
        self._stop_request_timer()
        self.transport.close()

    @property
    def _request_timeout(self) -> float | None:
        # None when uvicorn's config was not made by uvicorn_config(): no deadline then.
        return getattr(self.config, REQUEST_TIMEOUT_ATTR, None)

    def _start_request_timer(self) -> None:
        if self._request_timeout is not None and not self.transport.is_closing():
            self._request_timer = self.loop.call_later(
                self._request_timeout, self._request_timed_out
            )

    def _stop_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # closed, or upgraded to another protocol (WebSocket)
        cycle = self.cycle
        if self.pipeline or (self._in_head and cycle is not None and not cycle.response_complete):
            # An earlier response still goes out (uvicorn stops reading a pipelined request
            # meanwhile): this request's time has not started, and a 408 written now would
            # land inside that response.
            self._start_request_timer()
            return
        if self._in_head and not self._head_bytes:
            # Nothing of a request arrived: no one to answer, and no warning per socket
            # (a flood of silent connections would flood the log).
            log.debug("closed a connection that sent nothing")
            self.transport.close()
            return
        timeout = self._request_timeout or 0.0
        log.warning("closed a connection whose request was not complete after %g s", timeout)
        if self._in_head or cycle is None or not cycle.response_started:
            message = f"The request was not complete within {timeout:g} seconds."
            self._answer_and_close(codes.REQUEST_TIMEOUT(message))
        else:
            self.transport.close()  # an answer is already on its way: only stop reading

    def _refuse_head(self) -> None:
        if self.transport.is_closing():
            return
        self._in_head = False
        log.warning("refused a request head over %d bytes", MAX_HEAD_BYTES)
        message = f"The request line and headers are larger than {MAX_HEAD_BYTES} bytes."
        self._answer_and_close(codes.HEADER_TOO_LARGE(message))

    def _answer_and_close(self, error: GatewayError) -> None:
        """Write ``error`` as a whole answer straight to the socket, then close it (for a
        request the ASGI app has not answered)."""
        body = error.body()
        reason = HTTPStatus(error.status).phrase.encode()
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (error.status, reason, len(body))
        )
        self.transport.write(head + body)
        self.transport.close()
