"""The sync transport: urllib3 underneath, and the one place its exceptions are mapped.

The twin of ``_async/_transport.py`` in behaviour, written by hand because the two
libraries differ in kind. Blocking reads are stopped from other threads by shutting down
the socket, which is the only way to wake a thread blocked in ``recv``; each read sets the
socket timeout to what is left of the idle gap or the total deadline.
"""

from __future__ import annotations

import builtins
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from typing import Any, Literal, Protocol

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.exceptions import (
    HTTPError as Urllib3Error,
)
from urllib3.util.connection import allowed_gai_family

from .._abort import AbortSignal
from .._errors import NetworkError, TimeoutError
from .._headers import Headers
from .._proxy import Proxy, ProxyRoutes
from .._redact import redact_text, redact_url
from .._request import Request
from .._timeouts import Timeout
from .._tls import tls_failure

__all__ = ["RawResponse", "Sender", "Transport", "TransportName", "make_transport"]

# The transports a Client can be made with (``transport=``): urllib3's alone; the lean
# one is asyncio's (_async/_lean.py).
TransportName = Literal["urllib3"]

_USER_AGENT = "aifetch/0.1"
_READ_SIZE = 64 * 1024


def _what(request: Request) -> str:
    return f"{request.method} {redact_url(request.url)}"


class _Flight:
    """The socket of the request in flight on this thread, so an abort can shut it down."""

    __slots__ = ("aborted", "lock", "sock")

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.aborted = False
        self.lock = threading.Lock()

    def attach(self, sock: socket.socket | None) -> None:
        with self.lock:
            self.sock = sock
            if self.aborted and sock is not None:
                _shutdown(sock)

    def abort(self, _reason: Any = None) -> None:
        with self.lock:
            self.aborted = True
            if self.sock is not None:
                _shutdown(self.sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing left to wake
        sock.shutdown(socket.SHUT_RDWR)


_current = threading.local()


class _AttachMixin:
    """Hands each connection's socket to the flight on this thread, from before its
    connect() call on, so an abort can cut a connect short as well as a read."""

    sock: socket.socket | None
    host: str
    port: int
    timeout: Any
    source_address: tuple[str, int] | None
    socket_options: Any
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        # urllib3 makes and connects the socket in one call, which would leave an abort
        # nothing to shut down until the connect is over (forever with connect=None).
        # Same steps here, with each socket attached first: on Linux, shutdown() wakes a
        # connect() blocked in another thread.
        flight: _Flight | None = getattr(_current, "flight", None)
        if flight is None:
            return super()._new_conn()  # type: ignore[misc,no-any-return]
        try:
            return _connect(
                self._dns_host,
                self.port,
                self.timeout,
                self.source_address,
                self.socket_options,
                flight,
            )
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        except builtins.TimeoutError as exc:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(
                self,  # type: ignore[arg-type]
                f"Failed to establish a new connection: {exc}",
            ) from exc

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        flight: _Flight | None = getattr(_current, "flight", None)
        if flight is not None:
            flight.attach(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        flight: _Flight | None = getattr(_current, "flight", None)
        if flight is not None and self.sock is not None:
            flight.attach(self.sock)  # a reused keep-alive connection: no connect() call
        super().request(*args, **kwargs)  # type: ignore[misc]


def _connect(
    host: str,
    port: int,
    timeout: Any,
    source: tuple[str, int] | None,
    options: Any,
    flight: _Flight,
) -> socket.socket:
    """urllib3's ``create_connection``, handing each socket to ``flight`` before connecting."""
    host = host.strip("[]")
    error: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(
        host, port, allowed_gai_family(), socket.SOCK_STREAM
    ):
        sock = socket.socket(family, kind, proto)
        try:
            for option in options or ():
                sock.setsockopt(*option)
            if timeout is None or isinstance(timeout, int | float):
                sock.settimeout(timeout)
            if source:
                sock.bind(source)
            flight.attach(sock)
            sock.connect(address)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error or OSError("getaddrinfo returned no addresses")


class _HTTPConnection(_AttachMixin, HTTPConnection):
    pass


class _HTTPSConnection(_AttachMixin, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection

    def _validate_conn(self, conn: Any) -> None:
        # urllib3 warns on every request whose certificate was not checked. Here that
        # happens only when the caller chose verify=False; the async client does not warn
        # either. The rest is urllib3's own step: connect early, so TLS fails here.
        HTTPConnectionPool._validate_conn(self, conn)
        if conn.is_closed:
            conn.connect()


class RawResponse:
    """What the transport hands to the client: status line, headers and a body source."""

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: Headers, body: _Body) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body


class Sender(Protocol):
    """What the client sends through: this module's ``Transport``, or one passed in."""

    def send(self, request: Request, timeout: Timeout) -> RawResponse: ...
    def close(self) -> None: ...


def make_transport(
    name: TransportName | None,
    *,
    max_connections: int,
    max_connections_per_host: int,
    ssl_context: ssl.SSLContext | None,
    proxy: str | None,
    trust_env: bool,
) -> Sender:
    """The client's own transport: urllib3's, the one there is."""
    if name is not None and name != "urllib3":
        raise ValueError(
            f"transport: the blocking Client has urllib3's transport only, not {name!r} "
            "(the lean transport runs on asyncio: AsyncClient(transport='lean'))"
        )
    return Transport(
        max_connections=max_connections,
        max_connections_per_host=max_connections_per_host,
        ssl_context=ssl_context,
        proxy=proxy,
        trust_env=trust_env,
    )


class Transport:
    """Sends one request over a urllib3 pool; follows no redirects and retries nothing.

    ``ssl_context``: see ``aifetch._tls.tls_context`` (``None``: urllib3's default).
    ``proxy`` / ``trust_env``: see ``aifetch._proxy``; a ``ProxyManager`` per proxy URL.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        max_connections_per_host: int = 0,
        ssl_context: ssl.SSLContext | bool | None = None,
        keepalive_timeout: float = 15.0,
        proxy: str | None = None,
        trust_env: bool = False,
    ) -> None:
        kwargs: dict[str, Any] = {}
        if isinstance(ssl_context, ssl.SSLContext):
            kwargs["ssl_context"] = ssl_context
        elif ssl_context is False:
            kwargs["cert_reqs"] = "CERT_NONE"
        self._pool_kwargs: dict[str, Any] = dict(
            num_pools=max(10, max_connections),
            maxsize=max_connections_per_host or max_connections,
            block=False,
            retries=False,
            **kwargs,
        )
        self._pool = urllib3.PoolManager(**self._pool_kwargs)
        self._pool.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        routes = ProxyRoutes(proxy, trust_env)
        self._proxies = routes if routes.active else None
        self._secrets = routes.secrets
        self._via: dict[str, urllib3.ProxyManager] = {}
        self._via_lock = threading.Lock()

    def _manager(self, proxy: Proxy) -> urllib3.ProxyManager:
        """The pools behind ``proxy``: CONNECT tunnels for https targets, absolute-form
        requests to the proxy for http ones; its credentials go to the proxy only."""
        with self._via_lock:
            manager = self._via.get(proxy.url)
            if manager is None:
                headers = (
                    {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
                )
                manager = urllib3.ProxyManager(
                    proxy.url, proxy_headers=headers, **self._pool_kwargs
                )
                manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
                self._via[proxy.url] = manager
            return manager

    def close(self) -> None:
        self._pool.clear()
        with self._via_lock:
            for manager in self._via.values():
                manager.clear()

    def send(self, request: Request, timeout: Timeout) -> RawResponse:
        signal = request.signal
        if signal is not None:
            signal.throw_if_aborted()
        limit, phase = timeout.first_byte, "first_byte"
        if request.deadline is not None:
            remaining = request.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"the total timeout ran out before {_what(request)}", phase="total"
                )
            if limit is None or remaining < limit:
                limit, phase = remaining, "total"
        headers = dict(_fold_headers(request.headers))
        headers.setdefault("User-Agent", _USER_AGENT)
        headers.setdefault("Accept-Encoding", "gzip, deflate")
        body: Any = request.body
        chunked = body is not None and not isinstance(body, bytes)
        if chunked and not isinstance(body, Iterable):
            raise TypeError("the sync client streams only plain iterables of bytes")

        proxy = None if self._proxies is None else self._proxies.for_url(request.url)
        pool = self._pool if proxy is None else self._manager(proxy)
        flight = _Flight()
        handle = signal.add_listener(flight.abort) if signal is not None else None
        _current.flight = flight
        try:
            resp = pool.request(
                request.method,
                request.url,
                body=body,
                headers=headers,
                chunked=chunked,
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=True,
                timeout=urllib3.Timeout(connect=timeout.connect, read=limit),
            )
        except Exception as exc:
            if signal is not None:
                signal.remove_listener(handle)
            if flight.aborted and signal is not None:
                raise signal.error() from None
            raise _map_send_error(exc, request, timeout, limit, phase, proxy) from None
        finally:
            _current.flight = None
        source = _Body(resp, flight, timeout.idle, request.deadline, signal, handle, request)
        raw_headers = list(resp.headers.items())
        return RawResponse(resp.status, resp.reason or "", Headers._trusted(raw_headers), source)


def _fold_headers(headers: Headers) -> Iterable[tuple[str, str]]:
    # urllib3 takes a mapping; repeated names are joined as RFC 9110 §5.3 allows.
    seen: dict[str, tuple[str, list[str]]] = {}
    for name, value in headers.items():
        seen.setdefault(name.lower(), (name, []))[1].append(value)
    return ((name, ", ".join(values)) for name, values in seen.values())


def _map_send_error(
    exc: Exception,
    request: Request,
    timeout: Timeout,
    limit: float | None,
    phase: str,
    proxy: Proxy | None,
) -> Exception:
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, ProxyError) and proxy is not None:
        cause = exc.original_error
        tls = tls_failure(cause)
        # The proxy's own words may quote what it was sent: never its credentials.
        detail = f"TLS {tls}" if tls is not None else redact_text(str(cause), proxy.secrets)
        if isinstance(cause, NewConnectionError):
            # "<_HTTPSConnection(host=..., port=...)>: Failed to establish ...: [Errno ...]"
            detail = "the proxy is unreachable: " + detail.rpartition(": ")[2]
        return NetworkError(
            f"could not reach {_what(request)} through the proxy {proxy.url}: {detail}",
            phase="connect",
        )
    if isinstance(exc, SSLError):
        return NetworkError(
            f"could not connect: {_what(request)}: TLS {tls_failure(exc) or 'handshake failed'}",
            phase="connect",
        )
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 v2 (kept for backwards
    # compatibility), so it is told apart first: a refused connection is not a timeout.
    if isinstance(exc, NewConnectionError):
        return NetworkError(f"could not connect: {_what(request)}: {exc}", phase="connect")
    if isinstance(exc, ConnectTimeoutError):
        return TimeoutError(
            f"could not connect within {timeout.connect:g} s: {_what(request)}", phase="connect"
        )
    if isinstance(exc, ReadTimeoutError | builtins.TimeoutError):
        what = (
            "the total timeout ran out" if phase == "total" else f"no response within {limit:g} s"
        )
        return TimeoutError(f"{what}: {_what(request)}", phase=phase)
    if isinstance(exc, Urllib3Error | OSError):
        return NetworkError(
            f"the connection failed before the response arrived: {_what(request)}: "
            f"{type(exc).__name__}",
            phase="send",
        )
    return exc


class _Body:
    """Reads a urllib3 response body as it arrives, one socket read at a time."""

    __slots__ = (
        "_deadline",
        "_flight",
        "_handle",
        "_idle",
        "_request",
        "_resp",
        "_signal",
        "_sock",
        "_sock_timeout",
        "done",
    )

    def __init__(
        self,
        resp: urllib3.BaseHTTPResponse,
        flight: _Flight,
        idle: float | None,
        deadline: float | None,
        signal: AbortSignal | None,
        handle: int | None,
        request: Request,
    ) -> None:
        self._resp = resp
        self._flight = flight
        self._idle = idle
        self._deadline = deadline
        self._signal = signal
        self._handle = handle
        self._request = request
        self.done = False
        conn = resp.connection
        self._sock: socket.socket | None = getattr(conn, "sock", None)
        self._sock_timeout: float | None = -1.0

    def read(self) -> bytes:
        if self.done:
            return b""
        if self._flight.aborted and self._signal is not None:
            self._finish(close=True)
            raise self._signal.error()
        limit, phase = self._idle, "idle"
        if self._deadline is not None:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                self._finish(close=True)
                raise TimeoutError(
                    f"the total timeout ran out while reading the body: {_what(self._request)}",
                    phase="total",
                )
            if limit is None or remaining < limit:
                limit, phase = remaining, "total"
        if self._sock is not None and limit != self._sock_timeout:
            self._sock.settimeout(limit)
            self._sock_timeout = limit
        try:
            chunk = self._resp.read1(_READ_SIZE)
        except (ReadTimeoutError, builtins.TimeoutError):
            self._finish(close=True)
            if phase == "idle":
                raise TimeoutError(
                    f"no body data for {self._idle:g} s (idle timeout): {_what(self._request)}",
                    phase="idle",
                ) from None
            raise TimeoutError(
                f"the total timeout ran out while reading the body: {_what(self._request)}",
                phase="total",
            ) from None
        except (Urllib3Error, OSError, ValueError) as exc:
            self._finish(close=True)
            if self._flight.aborted and self._signal is not None:
                raise self._signal.error() from None
            raise NetworkError(
                f"the connection broke while reading the body of {_what(self._request)}: "
                f"{type(exc).__name__}",
                phase="body",
            ) from None
        if not chunk:
            if self._flight.aborted and self._signal is not None:
                self._finish(close=True)
                raise self._signal.error()
            self._finish(close=False)
        return chunk

    def _finish(self, *, close: bool) -> None:
        if self.done:
            return
        self.done = True
        if self._signal is not None:
            self._signal.remove_listener(self._handle)
        if close:
            self._resp.close()
        self._resp.release_conn()

    def close(self) -> None:
        """Stop early: the connection is closed (a half-read body cannot be reused)."""
        self._finish(close=True)
