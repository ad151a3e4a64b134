"""Fixtures for the client suite: every scenario runs on the async and the sync client,
and on the async client over the lean transport.

Tests are written once, as blocking code. The sync flavour is ``aifetch.Client`` itself;
the async flavour is ``aifetch.AsyncClient`` driven through a facade that runs each call
on one background event-loop thread and offers the same blocking methods; the lean flavour
is that facade over ``AsyncClient(transport="lean")``. Pipes are
written once too, as generators that yield effects (``Send``, ``Close``, ``Synthetic``,
``MapBody``) which each flavour performs its own way.

Servers are real and on 127.0.0.1: the scripted ``FakeUpstream`` for most scenarios, and
a few small behaviours of our own below for what it does not script (redirect chains,
many-valued headers, a head-then-stall stream, a listener that accepts nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

import aifetch
from tests.support.fake_upstream import Exchange, FakeUpstream

T = TypeVar("T")

GUARD = 10.0  # seconds: only there to turn a hang into a failure, never to synchronise


# --------------------------------------------------------------------------- hang guard


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    """A blocking call that never returns would stall the whole run: after a minute, dump
    every thread's stack and exit, so a hang shows up as a failure with its cause."""
    faulthandler.dump_traceback_later(60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


# --------------------------------------------------------------------------- event loop


class LoopThread:
    """An asyncio loop running in a daemon thread; ``run`` blocks on one coroutine."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="client-tests-loop")
        self._thread.daemon = True
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = GUARD) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[return-value]

    def stop(self) -> None:
        async def drain() -> None:
            await self.loop.shutdown_asyncgens()
            await self.loop.shutdown_default_executor()

        self.run(drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(GUARD)
        self.loop.close()


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


# --------------------------------------------------------------------------- portable pipes


@dataclass
class Send:
    """Call ``next(request)``; the pipe receives the response (or the exception)."""

    request: aifetch.Request


@dataclass
class Close:
    response: Any


@dataclass
class Synthetic:
    """Build a response of the client's flavour; ``body`` may be a list of chunks."""

    body: bytes | list[bytes] = b""
    status: int = 200
    headers: dict[str, str] | None = None


@dataclass
class MapBody:
    """A response whose body is ``response``'s body with ``fn`` applied to each chunk."""

    response: Any
    fn: Callable[[bytes], bytes]


PipeGen = Generator[Any, Any, Any]


class Portable:
    """A pipe written once, as a generator function ``gen(request)`` yielding effects."""

    def __init__(self, gen: Callable[[aifetch.Request], PipeGen]) -> None:
        self.gen = gen


def portable(gen: Callable[[aifetch.Request], PipeGen]) -> Portable:
    return Portable(gen)


def _async_pipe(p: Portable) -> Any:
    async def perform(effect: Any, nxt: Any) -> Any:
        if isinstance(effect, Send):
            return await nxt(effect.request)
        if isinstance(effect, Close):
            await effect.response.aclose()
            return None
        if isinstance(effect, Synthetic):
            body: Any = effect.body
            if isinstance(body, list):
                body = _agen(body)
            return aifetch.AsyncResponse(body, status=effect.status, headers=effect.headers)
        if isinstance(effect, MapBody):
            src = effect.response

            async def mapped() -> AsyncIterator[bytes]:
                try:
                    async for chunk in src.body:
                        yield effect.fn(chunk)
                finally:
                    await src.aclose()

            return aifetch.AsyncResponse(
                mapped(), status=src.status, headers=src.headers, url=src.url
            )
        raise TypeError(f"unknown effect {effect!r}")

    async def pipe(request: aifetch.Request, nxt: Any) -> Any:
        return await _drive_async(p.gen(request), lambda e: perform(e, nxt))

    return pipe


async def _drive_async(gen: PipeGen, perform: Callable[[Any], Any]) -> Any:
    try:
        effect = gen.send(None)
        while True:
            try:
                result = await perform(effect)
            except Exception as exc:
                effect = gen.throw(exc)
            else:
                effect = gen.send(result)
    except StopIteration as stop:
        return stop.value


async def _agen(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _sync_pipe(p: Portable) -> Any:
    def perform(effect: Any, nxt: Any) -> Any:
        if isinstance(effect, Send):
            return nxt(effect.request)
        if isinstance(effect, Close):
            effect.response.close()
            return None
        if isinstance(effect, Synthetic):
            body: Any = effect.body
            if isinstance(body, list):
                body = iter(body)
            return aifetch.Response(body, status=effect.status, headers=effect.headers)
        if isinstance(effect, MapBody):
            src = effect.response

            def mapped() -> Iterator[bytes]:
                try:
                    for chunk in src.body:
                        yield effect.fn(chunk)
                finally:
                    src.close()

            return aifetch.Response(mapped(), status=src.status, headers=src.headers, url=src.url)
        raise TypeError(f"unknown effect {effect!r}")

    def pipe(request: aifetch.Request, nxt: Any) -> Any:
        gen = p.gen(request)
        try:
            effect = gen.send(None)
            while True:
                try:
                    result = perform(effect, nxt)
                except Exception as exc:
                    effect = gen.throw(exc)
                else:
                    effect = gen.send(result)
        except StopIteration as stop:
            return stop.value

    return pipe


def _convert(pipes: Iterable[Any], make: Callable[[Portable], Any]) -> list[Any]:
    return [make(p) if isinstance(p, Portable) else p for p in pipes]


# --------------------------------------------------------------------------- client facades


class BlockingIter:
    """Drives an async iterator from the test thread, one ``anext`` per item."""

    def __init__(self, lt: LoopThread, it: AsyncIterator[Any]) -> None:
        self._lt = lt
        self._it = it

    def __iter__(self) -> BlockingIter:
        return self

    def __next__(self) -> Any:
        try:
            return self._lt.run(anext(self._it))  # type: ignore[arg-type]
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        close = getattr(self._it, "aclose", None)
        if close is not None:
            self._lt.run(close())


class AsyncResponseFacade:
    """An ``AsyncResponse`` seen through blocking methods named as on ``Response``."""

    def __init__(self, lt: LoopThread, resp: aifetch.AsyncResponse) -> None:
        self._lt = lt
        self.raw = resp

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    @property
    def body(self) -> BlockingIter:
        return BlockingIter(self._lt, self.raw.body)

    def bytes(self, **kwargs: Any) -> bytes:
        return self._lt.run(self.raw.bytes(**kwargs))

    def text(self) -> str:
        return self._lt.run(self.raw.text())

    def json(self) -> Any:
        return self._lt.run(self.raw.json())

    def events(self) -> BlockingIter:
        return BlockingIter(self._lt, self.raw.events())

    def raise_for_status(self) -> None:
        self._lt.run(self.raw.raise_for_status())

    def close(self) -> None:
        self._lt.run(self.raw.aclose())

    def __enter__(self) -> AsyncResponseFacade:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClientFacade:
    """``AsyncClient`` with blocking methods: each call runs on the loop thread."""

    flavour = "async"

    def __init__(self, lt: LoopThread, **options: Any) -> None:
        self.lt = lt
        options["pipes"] = _convert(options.get("pipes", ()), _async_pipe)
        self.raw = aifetch.AsyncClient(**options)

    def _options(self, options: dict[str, Any]) -> dict[str, Any]:
        if "pipes" in options:
            options["pipes"] = _convert(options["pipes"], _async_pipe)
        return options

    def fetch(self, resource: Any, **options: Any) -> AsyncResponseFacade:
        resp = self.lt.run(self.raw.fetch(resource, **self._options(options)))
        return AsyncResponseFacade(self.lt, resp)

    def _verb(self, verb: str, url: str, options: dict[str, Any]) -> AsyncResponseFacade:
        resp = self.lt.run(getattr(self.raw, verb)(url, **self._options(options)))
        return AsyncResponseFacade(self.lt, resp)

    def get(self, url: str, **options: Any) -> AsyncResponseFacade:
        return self._verb("get", url, options)

    def head(self, url: str, **options: Any) -> AsyncResponseFacade:
        return self._verb("head", url, options)

    def options(self, url: str, **options: Any) -> AsyncResponseFacade:
        return self._verb("options", url, options)

    def post(self, url: str, **options: Any) -> AsyncResponseFacade:
        return self._verb("post", url, options)

    def put(self, url: str, **options: Any) -> AsyncResponseFacade:
        return self._verb("put", url, options)

    def patch(self, url: str, **options: Any) -> AsyncResponseFacade:
        return self._verb("patch", url, options)

    def delete(self, url: str, **options: Any) -> AsyncResponseFacade:
        return self._verb("delete", url, options)

    def close(self) -> None:
        self.lt.run(self.raw.aclose())

    def __enter__(self) -> AsyncClientFacade:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SyncClientFacade:
    """``aifetch.Client`` as it is, plus portable pipes converted to plain ones."""

    flavour = "sync"

    def __init__(self, **options: Any) -> None:
        options["pipes"] = _convert(options.get("pipes", ()), _sync_pipe)
        self.raw = aifetch.Client(**options)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.raw, name)
        if name in ("fetch", "get", "head", "options", "post", "put", "patch", "delete"):

            def call(*args: Any, **options: Any) -> Any:
                if "pipes" in options:
                    options["pipes"] = _convert(options["pipes"], _sync_pipe)
                return attr(*args, **options)

            return call
        return attr

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> SyncClientFacade:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


ClientFacade = AsyncClientFacade | SyncClientFacade


class Flavour:
    """Makes clients of one flavour; every client made is closed at teardown."""

    def __init__(self, name: str, lt: LoopThread) -> None:
        self.name = name
        self.lt = lt
        self._clients: list[ClientFacade] = []

    def __call__(self, **options: Any) -> Any:
        client: ClientFacade
        if self.name == "async":
            client = AsyncClientFacade(self.lt, **options)
        elif self.name == "lean":
            client = AsyncClientFacade(self.lt, transport="lean", **options)
        else:
            client = SyncClientFacade(**options)
        self._clients.append(client)
        return client

    def close_all(self) -> None:
        for client in self._clients:
            client.close()


# The clients every scenario runs on: "lean" is AsyncClient(transport="lean").
FLAVOURS = ["async", "lean", "sync"]


@pytest.fixture(params=FLAVOURS)
def make_client(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[Flavour]:
    """``make_client(**options)`` builds a client of the test's flavour."""
    flavour = Flavour(request.param, loop_thread)
    yield flavour
    flavour.close_all()


@pytest.fixture
def client(make_client: Flavour) -> Any:
    """A client with default options, of the test's flavour."""
    return make_client()


# --------------------------------------------------------------------------- aborting


class Aborter:
    """Fires ``ctrl.abort(reason)`` once ``wait()`` returns, from another thread or task."""

    def __init__(self, via: str, lt: LoopThread) -> None:
        self.via = via
        self.lt = lt
        self.fired_on: list[int] = []  # thread ids abort() was called on
        self._threads: list[threading.Thread] = []
        self._futures: list[Any] = []

    def abort_when(
        self, ctrl: aifetch.AbortController, wait: Callable[[], object], reason: Any
    ) -> None:
        def fire() -> None:
            self.fired_on.append(threading.get_ident())
            ctrl.abort(reason)

        if self.via == "thread":

            def run() -> None:
                wait()
                fire()

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            self._threads.append(thread)
        else:

            async def task() -> None:
                await asyncio.to_thread(wait)
                fire()

            self._futures.append(self.lt.spawn(task()))

    def join(self) -> None:
        for thread in self._threads:
            thread.join(GUARD)
            assert not thread.is_alive()
        for future in self._futures:
            future.result(GUARD)


@dataclass
class AbortCase:
    client: Any
    aborter: Aborter


@pytest.fixture(params=["async-task", "async-thread", "lean-task", "lean-thread", "sync-thread"])
def abort_case(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[AbortCase]:
    """A client and a way to abort its request: from another task (async and lean) or
    thread."""
    flavour_name, via = request.param.split("-")
    flavour = Flavour(flavour_name, loop_thread)
    aborter = Aborter(via, loop_thread)
    yield AbortCase(flavour(), aborter)
    aborter.join()
    flavour.close_all()


# --------------------------------------------------------------------------- servers


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def other_origin(upstream: FakeUpstream) -> str:
    """The same server under another origin (localhost vs 127.0.0.1)."""
    return f"http://localhost:{upstream.port}"


@dataclass(frozen=True, slots=True)
class Hops:
    """``/hops/N`` redirects (``status``) to ``/hops/N-1``; ``/hops/0`` answers 200 "done"."""

    status: int = 302

    async def run(self, ex: Exchange) -> None:
        n = int(ex.request.path.rsplit("/", 1)[1])
        if n == 0:
            await ex.send_response(200, b"done", [("Content-Type", "text/plain")])
        else:
            await ex.send_response(self.status, b"", [("Location", f"/hops/{n - 1}")])


@dataclass(frozen=True, slots=True)
class HeadThenStall:
    """A chunked 200 with ``first`` as its first chunk, then silence until the peer leaves."""

    first: bytes = b"first chunk"

    async def run(self, ex: Exchange) -> None:
        await ex.start_stream(content_type="application/octet-stream")
        await ex.send_chunks(self.first)
        await ex.wait_peer_gone()
        ex.close()


@dataclass(frozen=True, slots=True)
class Chunks:
    """A chunked 200 sending ``pieces`` as separate chunks, then ending the body."""

    pieces: tuple[bytes, ...]
    content_type: str = "application/octet-stream"

    async def run(self, ex: Exchange) -> None:
        await ex.start_stream(content_type=self.content_type)
        for piece in self.pieces:
            await ex.send_chunks(piece)
        await ex.end_stream()


@dataclass(frozen=True, slots=True)
class Truncated:
    """A chunked 200 that sends ``first``, waits for ``release``, then closes (FIN)
    without the last chunk: the body breaks after the caller has had its first chunk.

    The wait matters: aiohttp raises a broken body's error before handing over data that
    arrived together with the close, so the close must come after the first read.
    """

    first: bytes
    release: threading.Event

    async def run(self, ex: Exchange) -> None:
        await ex.start_stream()
        await ex.send_chunks(self.first)
        await asyncio.to_thread(self.release.wait, GUARD)
        ex.close()


class Blackhole:
    """A listener whose accept queue is full, so a new connect never completes.

    Linux drops a SYN when the accept queue is full (``tcp_abort_on_overflow`` off), so the
    connecting side waits: a connect timeout on loopback, with no real network involved.
    """

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._fillers: list[socket.socket] = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", self.port))
            self._fillers.append(filler)

    def close(self) -> None:
        for s in (*self._fillers, self.sock):
            s.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


@pytest.fixture
def refused_url() -> str:
    """A URL on a loopback port nothing listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------- helpers


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def eventually(predicate: Callable[[], bool], timeout: float = GUARD) -> bool:
    """Whether ``predicate`` holds within ``timeout``: for state another thread settles
    (a server noticing a close), checked often rather than waited for blindly."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


async def eventually_async(
    predicate: Callable[[], bool],
    timeout: float = GUARD,
) -> bool:
    """``eventually`` for async tests: the loop keeps running (closing sockets) meanwhile."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Assert the block finished within ``seconds`` (a generous bound on a prompt failure)."""
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.2f} s, expected under {seconds} s"
