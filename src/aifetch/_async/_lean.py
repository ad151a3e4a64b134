"""The lean transport: HTTP/1.1 on ``asyncio.Protocol`` connections with ``httptools``'
response parser, the same interface and errors as the aiohttp transport.

Experimental, and opt-in: ``AsyncClient(transport="lean")``, or ``stream_transport: lean``
for a gateway upstream. It exists to measure how much of a relayed stream's cost is the
HTTP client's reader (bench/README.md, "A leaner upstream stream path"). It speaks plain
TCP and TLS to the origin itself; with a proxy (``proxy=``, or ``trust_env`` finding one)
every request takes the aiohttp transport instead, which knows tunnels and absolute-form
requests.

Errors are mapped as ``_transport.Transport`` maps aiohttp's, phase for phase:
``TimeoutError`` (connect, first_byte, idle, total), ``AbortError``, ``NetworkError``
(connect, send, body).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterable, Iterable
from typing import Any

from .._deadlines import Deadlines
from .._errors import NetworkError, TimeoutError
from .._http1 import LAST_CHUNK, Target, frame_chunk, request_head, target_of
from .._proxy import ProxyRoutes
from .._redact import redact_url
from .._request import Request
from .._timeouts import Timeout
from .._tls import tls_failure
from ._lean_body import LeanExchange
from ._lean_pool import Connection, Pool
from ._transport import RawResponse, Transport

__all__ = ["LeanTransport"]

# A body up to this size goes out in the same write as the head: one segment on the wire.
_JOIN_LIMIT = 64 * 1024


def _what(request: Request) -> str:
    return f"{request.method} {redact_url(request.url)}"


class LeanTransport:
    """Sends one request over a pooled connection; follows no redirects itself.

    Takes the aiohttp transport's settings (see ``_transport.Transport``).
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
        self._ssl_setting = ssl_context
        self._ssl: ssl.SSLContext | None = None  # made on the first https request
        self._pool = Pool(max_connections, max_connections_per_host, keepalive_timeout)
        # One timer for every first-byte wait and body read of this transport's requests.
        self._deadlines: Deadlines[LeanExchange] = Deadlines(LeanExchange.expire)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fallback: Transport | None = None
        if ProxyRoutes(proxy, trust_env).active:
            self._fallback = Transport(
                max_connections=max_connections,
                max_connections_per_host=max_connections_per_host,
                ssl_context=ssl_context,
                keepalive_timeout=keepalive_timeout,
                proxy=proxy,
                trust_env=trust_env,
            )

    @property
    def proxied(self) -> bool:
        """True when a proxy applies, so every request takes the aiohttp transport."""
        return self._fallback is not None

    def census(self) -> tuple[int, int]:
        """(connections in use, idle pooled connections) of the lean pool."""
        return self._pool.census()

    async def aclose(self) -> None:
        gone = self._pool.close()
        if gone:
            await asyncio.gather(*gone)
        if self._fallback is not None:
            await self._fallback.aclose()

    async def send(self, request: Request, timeout: Timeout) -> RawResponse:
        if self._fallback is not None:
            return await self._fallback.send(request, timeout)
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
        target = target_of(request.url)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        watch = self._deadlines
        exchange = LeanExchange(loop, request, signal, watch, timeout.idle)
        if limit is not None:
            watch.add(exchange, time.monotonic() + limit)
        if signal is not None:
            exchange.handle = signal.add_listener(exchange.on_abort)
        try:
            try:
                conn = self._pool.take(target.origin)
                if conn is None:
                    conn = await self._connection(request, target, timeout.connect)
                exchange.attach(conn)
                await _write_request(conn, request, target)
                arrived = await exchange.head()
            except asyncio.CancelledError:
                if not exchange.caused_cancel():
                    raise
                if exchange.stop_reason == "abort" and signal is not None:
                    raise signal.error() from None
                what = (
                    "the total timeout ran out"
                    if phase == "total"
                    else f"no response within {limit:g} s"
                )
                raise TimeoutError(f"{what}: {_what(request)}", phase=phase) from None
            finally:
                watch.discard(exchange)
            if not arrived:
                raise NetworkError(
                    f"the connection failed before the response arrived: {_what(request)}: "
                    f"{exchange.failure()}",
                    phase="send",
                )
        except BaseException:
            exchange.abandon()
            raise
        exchange.received()
        headers = exchange.headers
        assert headers is not None
        return RawResponse(exchange.status, exchange.reason, headers, exchange)

    async def _connection(
        self, request: Request, target: Target, connect: float | None
    ) -> Connection:
        """A pooled connection to ``target``'s origin, or a new one (waiting while the
        pool is full)."""
        pool = self._pool
        conn = await pool.reserve(target.origin)
        if conn is not None:
            return conn
        conn = Connection(pool, target.origin)
        loop = self._loop
        assert loop is not None
        deadline = asyncio.timeout(connect)
        try:
            tls = self._tls() if target.scheme == "https" else None
            async with deadline:
                await loop.create_connection(
                    lambda: conn,
                    target.host,
                    target.port,
                    ssl=tls,
                    server_hostname=target.host if tls is not None else None,
                )
        except OSError as exc:  # ssl.SSLError, socket.gaierror and TimeoutError among them
            pool.failed(target.origin)
            if deadline.expired():
                raise TimeoutError(
                    f"could not connect within {connect:g} s: {_what(request)}", phase="connect"
                ) from None
            tls_reason = tls_failure(exc)
            detail = f"TLS {tls_reason}" if tls_reason is not None else str(exc)
            raise NetworkError(
                f"could not connect: {_what(request)}: {detail}", phase="connect"
            ) from None
        except BaseException:
            pool.failed(target.origin)
            raise
        pool.opened(conn)
        return conn

    def _tls(self) -> ssl.SSLContext:
        context = self._ssl
        if context is None:
            setting = self._ssl_setting
            if isinstance(setting, ssl.SSLContext):
                context = setting
            else:
                # None or True: the system's CAs, as aiohttp's default; False: no check.
                context = ssl.create_default_context()
                if setting is False:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
            self._ssl = context
        return context


async def _write_request(conn: Connection, request: Request, target: Target) -> None:
    body: Any = request.body
    headers = request.headers._items
    if body is None:
        conn.write(request_head(request.method, target, headers, None))
    elif type(body) is bytes:
        head = request_head(request.method, target, headers, len(body))
        if len(body) <= _JOIN_LIMIT:
            conn.write(head + body)
        else:
            conn.write(head)
            conn.write(body)
    else:
        conn.write(request_head(request.method, target, headers, None, chunked=True))
        await _write_chunks(conn, body)


async def _write_chunks(conn: Connection, body: AsyncIterable[bytes] | Iterable[bytes]) -> None:
    """A streamed request body, chunked (RFC 9112 §7.1), at the pace the socket takes it;
    it stops when the connection is gone (the response head says why, or that it failed)."""
    if isinstance(body, AsyncIterable):
        async for chunk in body:
            if conn.dead:
                return
            if chunk:
                conn.write(frame_chunk(bytes(chunk)))
                await conn.drain()
    else:
        for chunk in body:
            if conn.dead:
                return
            if chunk:
                conn.write(frame_chunk(bytes(chunk)))
                await conn.drain()
    conn.write(LAST_CHUNK)
