"""The lean transport's own rules, beyond the scenarios every client flavour runs
(``make_client``'s "lean"): one piece per read, a bounded unread body, the ways an HTTP/1.1
response can end or be malformed, content codings, the pool's limits and keep-alive, and
the proxy fallback. Real servers on 127.0.0.1 throughout."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

import aifetch
from aifetch._async._lean import LeanTransport
from aifetch._async._lean_body import HIGH_WATER
from aifetch._http1 import MAX_DECODED_READ
from tests.client.conftest import GUARD, HeadThenStall
from tests.support.fake_upstream import Exchange, FakeUpstream, raw, respond, slow_first_byte

# The most one socket read hands over (asyncio's selector loop and uvloop alike).
MAX_SOCKET_READ = 256 * 1024


@pytest.fixture
async def lean() -> AsyncIterator[aifetch.AsyncClient]:
    async with aifetch.AsyncClient(transport="lean") as client:
        yield client


def _chunked(pieces: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def test_a_read_returns_everything_that_has_arrived_in_one_piece(
    lean: aifetch.AsyncClient, upstream: FakeUpstream
) -> None:
    pieces = [b'data: {"n": %d}\n\n' % i for i in range(200)]
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    upstream.enqueue(raw(head + b"\r\n" + _chunked(pieces), close=False))
    resp = await lean.get(f"{upstream.url}/s")
    reads = [chunk async for chunk in resp.body]
    # 200 HTTP chunks sent in one write: one read, one join (aiohttp hands them over one
    # by one only when the reader falls behind).
    assert reads == [b"".join(pieces)]


@dataclass(frozen=True, slots=True)
class BigBody:
    """A chunked body of ``size`` bytes in 64 KiB chunks, written as fast as the client
    takes them (each write waits while the socket is full)."""

    size: int

    async def run(self, ex: Exchange) -> None:
        await ex.start_stream(content_type="application/octet-stream")
        piece = bytes(range(256)) * 256
        for _ in range(self.size // len(piece)):
            await ex.send_chunks(piece)
        await ex.end_stream()


async def test_an_unread_body_is_held_to_a_bound(
    lean: aifetch.AsyncClient, upstream: FakeUpstream
) -> None:
    size = 8 * 1024 * 1024
    upstream.enqueue(BigBody(size))
    resp = await lean.get(f"{upstream.url}/big")
    chunks = aiter(resp.body)
    first = await anext(chunks)
    await asyncio.sleep(0.3)  # the server goes on writing meanwhile; the client reads nothing
    # A read takes everything held: what piled up while nobody read, at most the bound and
    # one socket read past it.
    held = await anext(chunks)
    assert len(held) <= HIGH_WATER + MAX_SOCKET_READ
    rest = [chunk async for chunk in chunks]
    assert len(first) + len(held) + sum(map(len, rest)) == size


async def test_a_body_without_a_length_ends_with_the_connection(
    lean: aifetch.AsyncClient, upstream: FakeUpstream
) -> None:
    upstream.enqueue(raw(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"))
    resp = await lean.get(f"{upstream.url}/eof")
    assert await resp.text() == "until the end"
    assert (await (await lean.get(f"{upstream.url}/echo")).json())["path"] == "/echo"
    assert upstream.connections_opened == 2  # the first one ended with its body


async def test_a_sized_body_cut_short_is_a_network_error(
    lean: aifetch.AsyncClient, upstream: FakeUpstream
) -> None:
    upstream.enqueue(raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"))
    resp = await lean.get(f"{upstream.url}/cut")
    with pytest.raises(aifetch.NetworkError) as info:
        await resp.bytes()
    assert info.value.phase == "body"
    assert "/cut" in str(info.value)


async def test_interim_responses_are_passed_over(
    lean: aifetch.AsyncClient, upstream: FakeUpstream
) -> None:
    upstream.enqueue(
        raw(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nX-Final: yes\r\nContent-Length: 2\r\n\r\nok",
            close=False,
        )
    )
    resp = await lean.post(f"{upstream.url}/made", body=b"x")
    assert resp.status == 201
    assert resp.status_text == "Created"
    assert resp.headers.get("x-final") == "yes"
    assert "link" not in resp.headers
    assert await resp.text() == "ok"


async def test_a_head_response_has_no_body_whatever_its_length_says(
    lean: aifetch.AsyncClient, upstream: FakeUpstream
) -> None:
    upstream.enqueue(raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", close=False))
    resp = await lean.head(f"{upstream.url}/h")
    assert resp.headers.get("content-length") == "5"
    assert await asyncio.wait_for(resp.bytes(), GUARD) == b""
    assert (await (await lean.get(f"{upstream.url}/echo")).json())["path"] == "/echo"


async def test_a_response_head_over_the_bound_is_refused(
    lean: aifetch.AsyncClient, upstream: FakeUpstream
) -> None:
    fields = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"v" * 1000) for i in range(70))
    upstream.enqueue(raw(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n\r\n"))
    with pytest.raises(aifetch.NetworkError) as info:
        await lean.get(f"{upstream.url}/fat")
    assert info.value.phase == "send"
    assert "64 KiB" in str(info.value)


async def test_an_invalid_response_is_a_network_error(
    lean: aifetch.AsyncClient, upstream: FakeUpstream
) -> None:
    upstream.enqueue(raw(b"HTTP/1.1 2xx Whatever\r\n\r\n"))
    with pytest.raises(aifetch.NetworkError) as info:
        await lean.get(f"{upstream.url}/bad")
    assert info.value.phase == "send"
    assert "invalid response" in str(info.value)


async def test_bytes_after_a_response_are_never_taken_for_the_next_one(
    lean: aifetch.AsyncClient, upstream: FakeUpstream
) -> None:
    upstream.enqueue(
        raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
            close=False,
        )
    )
    assert await (await lean.get(f"{upstream.url}/one")).text() == "ok"
    assert (await (await lean.get(f"{upstream.url}/echo")).json())["path"] == "/echo"
    assert upstream.connections_opened == 2  # the first connection was not reused


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(zlib.compress, id="deflate-zlib"),
        pytest.param(lambda data: zlib.compress(data)[2:-4], id="deflate-raw"),
    ],
)
async def test_deflate_bodies_are_decoded_with_or_without_the_zlib_wrapper(
    lean: aifetch.AsyncClient, upstream: FakeUpstream, encode: object
) -> None:
    assert callable(encode)
    payload = encode(b'{"deflated": true}')
    upstream.enqueue(respond(200, payload, [("Content-Encoding", "deflate")]))
    assert await (await lean.get(f"{upstream.url}/d")).json() == {"deflated": True}


async def test_a_compressed_body_comes_out_in_bounded_reads(
    lean: aifetch.AsyncClient, upstream: FakeUpstream
) -> None:
    size = 8 * 1024 * 1024
    bomb = gzip.compress(b"\0" * size)  # 8 KiB on the wire
    upstream.enqueue(respond(200, bomb, [("Content-Encoding", "gzip")]))
    resp = await lean.get(f"{upstream.url}/z")
    reads = [chunk async for chunk in resp.body]
    assert max(map(len, reads)) <= MAX_DECODED_READ
    assert sum(map(len, reads)) == size


async def test_an_invalid_compressed_body_is_a_network_error(
    lean: aifetch.AsyncClient, upstream: FakeUpstream
) -> None:
    upstream.enqueue(respond(200, b"not gzip at all", [("Content-Encoding", "gzip")]))
    resp = await lean.get(f"{upstream.url}/z")
    with pytest.raises(aifetch.NetworkError) as info:
        await resp.bytes()
    assert info.value.phase == "body"


async def test_requests_beyond_max_connections_wait_for_one(upstream: FakeUpstream) -> None:
    upstream.route("GET", "/slow", slow_first_byte(0.1, respond(200, b"late")))
    async with aifetch.AsyncClient(transport="lean", max_connections=2) as client:

        async def one() -> bytes:
            return await (await client.get(f"{upstream.url}/slow")).bytes()

        answers = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(6))), GUARD)
    assert answers == [b"late"] * 6
    assert upstream.connections_opened == 2


async def test_an_idle_connection_is_closed_after_the_keepalive(upstream: FakeUpstream) -> None:
    transport = LeanTransport(keepalive_timeout=0.2)
    async with aifetch.AsyncClient(transport=transport) as client:
        assert (await (await client.get(f"{upstream.url}/echo")).json())["path"] == "/echo"
        first = upstream.requests[0].connection_id
        assert await upstream.wait_for_close_async(first, GUARD) is not None
        # The next request opens a new connection rather than using the closed one.
        assert (await (await client.get(f"{upstream.url}/echo")).json())["path"] == "/echo"
    assert upstream.connections_opened == 2


async def test_closing_the_client_fails_a_body_being_read(upstream: FakeUpstream) -> None:
    upstream.enqueue(HeadThenStall(b"first"))
    client = aifetch.AsyncClient(transport="lean")
    resp = await client.get(f"{upstream.url}/stall")
    chunks = aiter(resp.body)
    assert await anext(chunks) == b"first"
    reading = asyncio.ensure_future(anext(chunks))
    await asyncio.sleep(0.05)
    await client.aclose()
    with pytest.raises(aifetch.NetworkError) as info:
        await asyncio.wait_for(reading, GUARD)
    assert info.value.phase == "body"
    assert "the client was closed" in str(info.value)


async def test_an_answer_before_the_whole_request_body_stops_the_upload() -> None:
    """A server may answer (413, say) and close before a streamed body ends: the upload
    stops there, and the answer is what the caller gets, not a hang on an endless body."""

    async def answer_early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\n")
        writer.write(b"Content-Length: 8\r\n\r\ntoo much")
        await writer.drain()
        writer.close()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 1024
            await asyncio.sleep(0)

    server = await asyncio.start_server(answer_early, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with aifetch.AsyncClient(transport="lean", throw_http_errors=False) as client:
            resp = await asyncio.wait_for(
                client.post(f"http://127.0.0.1:{port}/up", body=endless()), GUARD
            )
            assert resp.status == 413
            assert await resp.text() == "too much"
    finally:
        server.close()
        await server.wait_closed()


def test_a_proxy_sends_through_aiohttp() -> None:
    assert LeanTransport(proxy="http://127.0.0.1:3128").proxied is True
    assert LeanTransport().proxied is False


def test_the_blocking_client_has_no_lean_transport() -> None:
    with pytest.raises(ValueError, match="runs on asyncio"):
        aifetch.Client(transport="lean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected 'aiohttp' or 'lean'"):
        aifetch.AsyncClient(transport="httpx")  # type: ignore[arg-type]
