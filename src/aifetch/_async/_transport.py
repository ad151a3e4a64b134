"""The async transport: aiohttp underneath, and the one place its exceptions are mapped.

Timeouts and aborts are enforced here because only the transport can stop a read in
progress. Body reads carry a watchdog rather than a timer per read: a read only records
when it started, and one timer per idle period checks whether a read has been waiting
too long (a per-read ``asyncio.timeout`` costs a heap push and pop on every chunk).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Literal, Protocol

import aiohttp
import yarl

from .._deadlines import Deadlines
from .._errors import InvalidURLError, NetworkError, TimeoutError
from .._headers import Headers
from .._proxy import Proxy, ProxyRoutes
from .._redact import redact_text, redact_url
from .._request import Request
from .._timeouts import Timeout
from .._tls import tls_failure
from ._exchange import Exchange

if TYPE_CHECKING:
    from ._response import BodySource

__all__ = ["RawResponse", "Sender", "Transport", "TransportName", "make_transport"]

# The transports an AsyncClient can be made with (``transport=``).
TransportName = Literal["aiohttp", "lean"]

_USER_AGENT = "aifetch/0.1"


class RawResponse:
    """What the transport hands to the client: status line, headers and a body source."""

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: Headers, body: BodySource) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body


class Sender(Protocol):
    """What the client sends through: this module's ``Transport``, or the lean one."""

    async def send(self, request: Request, timeout: Timeout) -> RawResponse: ...
    async def aclose(self) -> None: ...


def make_transport(
    name: TransportName | None,
    *,
    max_connections: int,
    max_connections_per_host: int,
    ssl_context: ssl.SSLContext | None,
    proxy: str | None,
    trust_env: bool,
) -> Sender:
    """The client's own transport: ``"aiohttp"`` (the default) or ``"lean"``
    (experimental: ``_lean.py``; with a proxy it sends through aiohttp all the same)."""
    settings: dict[str, Any] = {
        "max_connections": max_connections,
        "max_connections_per_host": max_connections_per_host,
        "ssl_context": ssl_context,
        "proxy": proxy,
        "trust_env": trust_env,
    }
    if name is None or name == "aiohttp":
        return Transport(**settings)
    if name == "lean":
        from ._lean import LeanTransport  # imported only by the clients that use it

        return LeanTransport(**settings)
    raise ValueError(f"transport: expected 'aiohttp' or 'lean', got {name!r}")


class _Interrupted(Exception):
    """Set on aiohttp's stream reader to wake a pending read; never escapes this module."""


async def _aiter_sync(body: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in body:
        yield chunk


@functools.lru_cache(maxsize=1024)
def _wire_url(url: str) -> yarl.URL:
    # `encoded=True`: the URL was serialised by _urls.normalize_url and must go out as is.
    # Cached because clients call the same few URLs over and over.
    return yarl.URL(url, encoded=True)


def _what(request: Request) -> str:
    return f"{request.method} {redact_url(request.url)}"


class Transport:
    """Sends one request over a pooled aiohttp session; follows no redirects itself.

    ``ssl_context``: see ``aifetch._tls.tls_context`` (``None``: aiohttp's default).
    ``proxy`` / ``trust_env``: see ``aifetch._proxy``; the proxy is chosen here per request
    (aiohttp's own ``trust_env`` stays off, so both transports route alike).
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
        self._limits = (max_connections, max_connections_per_host)
        self._ssl: ssl.SSLContext | bool = True if ssl_context is None else ssl_context
        self._keepalive = keepalive_timeout
        routes = ProxyRoutes(proxy, trust_env)
        # None when nothing is proxied: the request path then never looks.
        self._proxies = routes if routes.active else None
        self._secrets = routes.secrets
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float | None, aiohttp.ClientTimeout] = {}
        # Every first-byte wait and body read of this transport's requests, one timer.
        self._deadlines: Deadlines[_Exchange] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limits[0],
                limit_per_host=self._limits[1],
                ssl=self._ssl,
                keepalive_timeout=self._keepalive,
            )
            # Cookies are off: a server-side client must not carry one caller's cookies
            # into another's request (fetch's `credentials` has no safe default here).
            session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),
                trust_env=False,
                auto_decompress=True,
                # aifetch's User-Agent as the session default: a request's own User-Agent
                # replaces it, and aiohttp adds none of its own. (skip_auto_headers would
                # send every request down aiohttp's slow header path: ~7.7 us per request
                # in the gateway profile, bench/README.md.)
                headers={"User-Agent": _USER_AGENT},
            )
            # aiohttp silently resends an idempotent request once when its connection
            # breaks before the response (RFC 9112 §9.3.1 allows it). Retrying is the retry
            # pipe's job, where it is counted (retries_taken) and bounded by the deadline,
            # and the sync transport never does it: turn it off (aiohttp's test_utils does
            # the same).
            session._retry_connection = False
            self._session = session
            self._deadlines = Deadlines(_Exchange.expire)
            self._loop = asyncio.get_running_loop()
        return session

    def _client_timeout(self, connect: float | None) -> aiohttp.ClientTimeout:
        cached = self._timeouts.get(connect)
        if cached is None:
            cached = aiohttp.ClientTimeout(total=None, sock_connect=connect)
            self._timeouts[connect] = cached
        return cached

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: Request, timeout: Timeout) -> RawResponse:
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

        body: Any = request.body
        if body is not None and type(body) is not bytes and not isinstance(body, AsyncIterable):
            body = _aiter_sync(body)

        session = self._session
        if session is None or session.closed:
            session = self._get_session()
        loop = self._loop
        watch = self._deadlines
        assert watch is not None
        assert loop is not None
        exchange = _Exchange(loop, request, signal, watch, timeout.idle)
        if limit is not None:
            watch.add(exchange, time.monotonic() + limit)
        if signal is not None:
            exchange.handle = signal.add_listener(exchange.on_abort)
        proxy = None if self._proxies is None else self._proxies.for_url(request.url)
        try:
            try:
                if proxy is None:
                    resp = await session.request(
                        request.method,
                        _wire_url(request.url),
                        # Read once into aiohttp's own headers; the pairs were checked as
                        # they went into Headers.
                        headers=request.headers._items,
                        data=body,
                        allow_redirects=False,
                        timeout=self._timeouts.get(timeout.connect)
                        or self._client_timeout(timeout.connect),
                    )
                else:
                    resp = await self._proxied(session, proxy, request, body, timeout)
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
            except aiohttp.ConnectionTimeoutError:
                raise TimeoutError(
                    f"could not connect within {timeout.connect:g} s: {_what(request)}",
                    phase="connect",
                ) from None
            except aiohttp.ClientProxyConnectionError as exc:
                assert proxy is not None
                raise NetworkError(
                    self._clean(
                        f"could not connect to the proxy {proxy.url}: {_what(request)}: "
                        f"{exc.os_error}"
                    ),
                    phase="connect",
                ) from None
            except aiohttp.ClientHttpProxyError as exc:
                assert proxy is not None
                raise NetworkError(
                    self._clean(
                        f"the proxy {proxy.url} refused the tunnel for {_what(request)}: "
                        f"{exc.status} {exc.message}"
                    ),
                    phase="connect",
                ) from None
            except aiohttp.ClientConnectorError as exc:
                tls = tls_failure(exc)
                detail = f"TLS {tls}" if tls is not None else exc.os_error
                raise NetworkError(
                    self._clean(f"could not connect: {_what(request)}: {detail}"),
                    phase="connect",
                ) from None
            except aiohttp.InvalidURL:
                raise InvalidURLError(f"aiohttp refused the URL of {_what(request)}") from None
            except (aiohttp.ClientError, OSError) as exc:
                raise NetworkError(
                    self._clean(
                        f"the connection failed before the response arrived: {_what(request)}: "
                        f"{type(exc).__name__}: {exc}"
                    ),
                    phase="send",
                ) from None
            finally:
                watch.discard(exchange)
        except BaseException:
            # Nothing to read: an abort already on its way to the loop finds it over.
            exchange.phase = "over"
            if signal is not None:
                signal.remove_listener(exchange.handle)
            raise

        exchange.received(resp)
        # A plain loop: a list comprehension is a frame of its own before 3.12.
        headers = []
        for name, value in resp.raw_headers:
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
        return RawResponse(resp.status, resp.reason or "", Headers._trusted(headers), exchange)

    def _proxied(
        self,
        session: aiohttp.ClientSession,
        proxy: Proxy,
        request: Request,
        body: Any,
        timeout: Timeout,
    ) -> Any:
        """``session.request`` through ``proxy``: its credentials go on the CONNECT for an
        https target, on the request itself (which the proxy receives) for an http one."""
        headers: list[tuple[str, str]] = request.headers._items
        extra: dict[str, Any] = {}
        if proxy.authorization is not None:
            if request.url.startswith("https:"):
                # A new dict per request: aiohttp adds the Host header to it.
                extra["proxy_headers"] = {"Proxy-Authorization": proxy.authorization}
            else:
                headers = [*headers, ("Proxy-Authorization", proxy.authorization)]
        return session.request(
            request.method,
            _wire_url(request.url),
            headers=headers,
            data=body,
            allow_redirects=False,
            timeout=self._client_timeout(timeout.connect),
            proxy=proxy.url,
            **extra,
        )

    def _clean(self, message: str) -> str:
        """``message`` without any proxy credential (a library may quote what it sent)."""
        return redact_text(message, self._secrets) if self._secrets else message


class _Exchange(Exchange):
    """One request on aiohttp (the phases, deadlines and abort: ``_exchange.Exchange``):
    once the response is ``received``, its body source, read chunk by chunk as they
    arrive."""

    _resp: aiohttp.ClientResponse
    _content: aiohttp.StreamReader
    __slots__ = ("_content", "_resp")
    # _resp and _content are set by received(), before anything reads them.

    def received(self, resp: aiohttp.ClientResponse) -> None:
        """The response head is in: from now on this is its body source."""
        self._resp = resp
        self._content = resp.content
        self.phase, self.stop_reason = "reading", None
        signal = self._signal
        if signal is not None and signal._aborted:  # not the property: a call fewer
            self.interrupt("abort")

    # --------------------------------------------------------------- the body

    async def read(self) -> bytes:
        if self.phase == "over":
            if self.stop_reason is not None:
                self._raise_failure()
            return b""
        content = self._content
        # Everything has arrived (a small JSON body comes whole with its headers): take it
        # all without waiting, so no watch and no await.
        arrived = content.is_eof()
        watch = None if arrived else self._watch
        if watch is not None:
            due = self._deadline
            if self._idle is not None:
                idle_due = time.monotonic() + self._idle
                if due is None or idle_due < due:
                    due = idle_due
            assert due is not None  # a watch is kept only when one of the two is set
            watch.add(self, due)
        try:
            chunk = content.read_nowait() if arrived else await content.readany()
        except _Interrupted:
            self._raise_failure()
        except (aiohttp.ClientError, OSError) as exc:
            if self.stop_reason is not None:
                self._raise_failure()
            self._finish(close=True)
            raise NetworkError(
                f"the connection broke while reading the body of {_what(self._request)}: "
                f"{type(exc).__name__}: {exc}",
                phase="body",
            ) from None
        finally:
            if watch is not None:
                watch.discard(self)
        if not chunk or content.at_eof():
            # Once the end has arrived, the connection goes back to the pool now rather
            # than after one more read.
            self._finish(close=False)
        return chunk

    def interrupt(self, kind: str) -> None:
        if self.phase != "reading":
            return
        self.stop_reason = kind
        self._content.set_exception(_Interrupted(kind))
        self._finish(close=True)

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

    def _finish(self, *, close: bool) -> None:
        if self.phase == "over":
            return
        self.phase = "over"
        # Nothing to take off the watch: only a waiting read is on it, and that read's
        # own `finally` takes it off.
        if self._signal is not None:
            self._signal.remove_listener(self.handle)
        if close:
            self._resp.close()
        else:
            self._resp.release()

    async def aclose(self) -> None:
        """Stop early: the connection is closed (a half-read body cannot be reused)."""
        if self.stop_reason is None:
            self.stop_reason = "closed"
        self._finish(close=True)
