"""The private parts of aiohttp, urllib3 and uvicorn that aifetch relies on, checked one by
one, so an upgrade that moves one fails here, loudly and by name, instead of somewhere
deep in a transport test. Each check names where aifetch uses the hook."""

from __future__ import annotations

import asyncio
import inspect

import aiohttp
import aiohttp.base_protocol
import pytest
import urllib3
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from aifetch.gateway._server import BoundedHeadProtocol


async def test_aiohttp_session_retry_connection_switch() -> None:
    # _async/_transport.py turns off aiohttp's silent resend of idempotent requests.
    async with aiohttp.ClientSession() as session:
        assert hasattr(session, "_retry_connection")
    assert "_retry_connection" in inspect.getsource(aiohttp.ClientSession._request)


async def test_aiohttp_stream_reader_wakes_a_pending_read_on_set_exception() -> None:
    # _async/_transport.py interrupts a waiting body read (abort, idle timeout) this way.
    loop = asyncio.get_running_loop()
    protocol = aiohttp.base_protocol.BaseProtocol(loop)
    protocol.connection_made(asyncio.Transport())  # a read waits only while connected
    reader = aiohttp.StreamReader(protocol, limit=2**16, loop=loop)
    pending = asyncio.ensure_future(reader.readany())
    await asyncio.sleep(0)
    reader.set_exception(KeyError("interrupted"))
    with pytest.raises(KeyError):
        await pending
    for name in ("read_nowait", "is_eof", "at_eof"):
        assert callable(getattr(reader, name)), name


def test_aiohttp_response_surface() -> None:
    for name in ("raw_headers", "content", "release", "close", "reason", "status"):
        assert hasattr(aiohttp.ClientResponse, name), name


def test_urllib3_connection_hooks() -> None:
    # _sync/_transport.py makes each socket itself (_new_conn) so an abort can cut a
    # connect short, and swaps the pool classes per scheme.
    connection = urllib3.connection.HTTPConnection("127.0.0.1", 9)
    assert connection._dns_host == "127.0.0.1"
    for name in ("_new_conn", "connect", "request"):
        assert callable(getattr(urllib3.connection.HTTPConnection, name)), name
    for name in ("source_address", "socket_options", "sock"):
        assert hasattr(connection, name), name
    pool = urllib3.PoolManager()
    assert set(pool.pool_classes_by_scheme) == {"http", "https"}
    pool.clear()


async def test_uvicorn_httptools_protocol_state() -> None:
    # gateway/_server.py's BoundedHeadProtocol reads and overrides these.
    for name in ("data_received", "on_headers_complete", "on_message_complete"):
        assert callable(getattr(HttpToolsProtocol, name)), name
    config = uvicorn.Config(app=_app, http=BoundedHeadProtocol)
    config.load()
    protocol = BoundedHeadProtocol(config=config, server_state=ServerState(), app_state={})
    for name in ("config", "loop", "pipeline", "cycle", "transport"):
        assert name in vars(protocol), name
    for name in ("response_started", "response_complete"):
        assert name in inspect.getsource(RequestResponseCycle.__init__), name


def test_uvicorn_server_and_supervisor_hooks() -> None:
    # gateway/_server.py: the server binds before it starts, reads its sockets, and runs
    # workers with uvicorn's own supervisor.
    from uvicorn.supervisors import Multiprocess

    assert callable(uvicorn.Config.bind_socket)
    for name in ("startup", "shutdown", "serve"):
        assert callable(getattr(uvicorn.Server, name)), name
    assert "sockets" in inspect.signature(uvicorn.Server.startup).parameters
    assert callable(Multiprocess.run)


async def _app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("never called")
