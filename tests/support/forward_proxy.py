"""An HTTP forward proxy on 127.0.0.1 that records what passed through it.

- ``CONNECT host:port`` (RFC 9110 §9.3.6): answered ``200``, then bytes are relayed both
  ways untouched (the proxy never sees inside the TLS an https target runs in it).
- An absolute-form request (``GET http://host:port/path``, RFC 9112 §3.2.2): sent on to
  the origin in origin form without the hop-by-hop ``Proxy-Authorization`` and
  ``Proxy-Connection`` fields, one request per connection (``Connection: close`` both
  ways), the origin's answer relayed as it comes.
- With ``credentials``, a request without the matching ``Proxy-Authorization: Basic``
  gets ``407`` and ``Proxy-Authenticate`` (RFC 9110 §11.7.1), and is not forwarded.

``records`` lists each request: method, target, and the ``Proxy-Authorization`` it
carried (``None`` if none).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from tests.support.loop_server import LoopServer, header, read_head

_HOP_BY_HOP = {"proxy-authorization", "proxy-connection", "connection", "keep-alive"}


@dataclass
class ProxyRecord:
    method: str
    target: str
    authorization: str | None
    answered: int  # the status the proxy itself gave (200 for a tunnel), 0 if forwarded


class ForwardProxy(LoopServer):
    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.credentials = credentials
        self.records: list[ProxyRecord] = []

    def url_with(self, user: str, password: str) -> str:
        """This proxy's URL with credentials (percent-encoded as URLs need)."""
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    def _authorized(self, value: str | None) -> bool:
        if self.credentials is None:
            return True
        user, password = self.credentials
        expected = base64.b64encode(f"{user}:{password}".encode()).decode()
        return value == f"Basic {expected}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        if head is None:
            return
        line, headers = head
        method, target, _version = line.split(" ", 2)
        authorization = header(headers, "proxy-authorization")
        if not self._authorized(authorization):
            self.records.append(ProxyRecord(method, target, authorization, 407))
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\n'
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            return
        if method == "CONNECT":
            self.records.append(ProxyRecord(method, target, authorization, 200))
            await self._tunnel(target, reader, writer)
        else:
            self.records.append(ProxyRecord(method, target, authorization, 0))
            await self._forward(method, target, headers, reader, writer)

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port = target.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        async with _closing(up_writer):
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await _relay_both(reader, writer, up_reader, up_writer)

    async def _forward(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        async with _closing(up_writer):
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            kept = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
            head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in kept)
            up_writer.write(head.encode("latin-1") + b"Connection: close\r\n\r\n")
            length = int(header(headers, "content-length") or 0)
            if length:
                up_writer.write(await reader.readexactly(length))
            await up_writer.drain()
            # The answer's head gets "Connection: close": this proxy serves one request per
            # connection, and the client must not send a second one on it.
            answer = await read_head(up_reader)
            if answer is None:
                return
            status_line, answer_headers = answer
            kept = [(k, v) for k, v in answer_headers if k.lower() not in _HOP_BY_HOP]
            out = status_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in kept)
            writer.write(out.encode("latin-1") + b"Connection: close\r\n\r\n")
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()


@contextlib.asynccontextmanager
async def _closing(up_writer: asyncio.StreamWriter) -> AsyncIterator[None]:
    """Close the connection to the origin however the exchange ends (a client that hangs
    up, a stop that cancels it): left to the garbage collector, it warns after the loop
    has closed, in whichever test runs then."""
    try:
        yield
    finally:
        up_writer.close()
        with contextlib.suppress(Exception):
            await up_writer.wait_closed()


async def _relay_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.write_eof()

    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
