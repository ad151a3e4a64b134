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

This module is the front door: ``FakeUpstream`` (the thread that runs the server
for a test, its scripting and its observations) and the standalone entry point
are here; the server itself is ``fake_http`` (the protocol part) and what it
answers is ``fake_behaviours``. Import every name from here.

Run standalone for benchmarks::

    python -m tests.support.fake_upstream --port 8900 --chunks 200 --chunk-delay 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from tests.support import fake_behaviours, fake_http
from tests.support.fake_behaviours import *  # noqa: F403  (the front door: every behaviour)
from tests.support.fake_behaviours import DefaultHandler
from tests.support.fake_http import *  # noqa: F403  (and the protocol part's public names)
from tests.support.fake_http import Behaviour, RecordedRequest, ServerState, close_all, listen

__all__ = ["STOP_TIMEOUT", "FakeUpstream", "main"]
__all__ += fake_http.__all__
__all__ += fake_behaviours.__all__

STOP_TIMEOUT = 5.0


# --------------------------------------------------------------------------- public server


class FakeUpstream:
    """The scripted upstream; see the module docstring."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, default: Behaviour | None = None
    ) -> None:
        self.host = host
        self.port = port
        self._state = ServerState(default or DefaultHandler())
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
            future = asyncio.run_coroutine_threadsafe(close_all(self._server, self._state), loop)
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
        return await listen(self._state, self.host, self.port)

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
        self._state.enqueue(behaviour, path, times)

    def route(self, method: str, path: str, behaviour: Behaviour) -> None:
        """Answer every ``method path`` with this (exact path, or a prefix ending in "*")."""
        self._state.route(method, path, behaviour)

    def reset(self) -> None:
        """Forget queued behaviours, routes and records (connection counters are kept)."""
        self._state.forget()

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
    state = ServerState(handler, record=False)
    server = await listen(state, args.host, args.port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = server.sockets[0].getsockname()[1]
    print(f"READY http://{args.host}:{port}", flush=True)
    await stop.wait()
    await close_all(server, state)


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
