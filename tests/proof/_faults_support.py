"""Harness for the fault matrix: an inspectable in-process gateway, a raw-socket caller,
access-log capture, and the leak census taken before and after every cell.

The gateway runs in this process on its own uvicorn loop thread, so the census can look
inside it (asyncio tasks on its loop, calls in flight, the upstream pool) and at the
process's sockets and file descriptors (Linux ``/proc``). The caller speaks HTTP/1.1 on a
plain socket so a test can misbehave at any byte: stop reading, leave mid-head, send a
body slowly or never finish it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from aifetch.gateway import GatewayConfig, parse_config
from aifetch.gateway._app import GatewayApp
from aifetch.gateway._server import GatewayServer, uvicorn_config
from tests.support.fake_upstream import FakeUpstream

_T = TypeVar("_T")

CHAT = "/v1/chat/completions"
# Hang-catching bounds only: every cell finishes far sooner when nothing is wrong.
HANG = 10.0
SETTLE = 5.0
UPSTREAM_SECRET = "sk-fault-matrix-upstream-0000"

# Short gateway timeouts so stalls and slow starts are detected in a fraction of a second.
IDLE = 0.3
FIRST_BYTE = 0.5
TOTAL = 1.0


def matrix_config(upstream_url: str, *, max_body: int = 64 * 1024) -> GatewayConfig:
    """Models: ``gpt`` (one attempt), ``gpt-retry`` (three attempts, short waits),
    ``gpt-total`` (an upstream with a 1 s total deadline) and ``gpt-patient`` (timeouts
    too long to matter within a test), all on the fake upstream."""

    def upstream(total: float | None, wait: float = 0.0) -> dict[str, Any]:
        first_byte, idle = (wait, wait) if wait else (FIRST_BYTE, IDLE)
        timeout = {"connect": 2, "first_byte": first_byte, "idle": idle, "total": total}
        return {
            "kind": "openai",
            "base_url": upstream_url + "/v1",
            "api_key": UPSTREAM_SECRET,
            "timeout": timeout,
        }

    one = {"attempts": 1}
    return parse_config(
        {
            "upstreams": {
                "fake": upstream(None),
                "fake-total": upstream(TOTAL),
                "fake-patient": upstream(None, wait=60.0),
            },
            "models": {
                "gpt": {"targets": [{"upstream": "fake"}], "retry": one},
                "gpt-retry": {
                    "targets": [{"upstream": "fake"}],
                    "retry": {"attempts": 3, "backoff": 0.01, "cap": 0.05},
                },
                "gpt-total": {"targets": [{"upstream": "fake-total"}], "retry": one},
                "gpt-patient": {"targets": [{"upstream": "fake-patient"}], "retry": one},
            },
            "server": {"heartbeat": 0, "shutdown_grace": 1},
            "limits": {"max_body_bytes": max_body},
        }
    )


# --------------------------------------------------------------------------- gateway


class _LoopServer(GatewayServer):
    """A ``GatewayServer`` that remembers the loop it serves on, for inspection."""

    loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)


class InspectableGateway:
    """The gateway under uvicorn (uvloop + httptools) on a thread of this process."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.server = _LoopServer(uvicorn_config(config, host="127.0.0.1", port=0), config)
        self.thread = threading.Thread(target=self.server.run, name="gateway", daemon=True)
        self.port = 0

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + HANG
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        self.port = self.server.bound_address()[1]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(HANG)
        assert not self.thread.is_alive(), "the gateway did not stop"

    @property
    def app(self) -> GatewayApp:
        assert self.server.app is not None
        return self.server.app

    def on_loop(self, make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        """Run a coroutine on the gateway's loop and wait for its result."""
        assert self.server.loop is not None
        future = asyncio.run_coroutine_threadsafe(make(), self.server.loop)
        return future.result(HANG)

    def inside(self) -> tuple[int, int, int, int]:
        """(asyncio tasks on the loop, calls in flight, upstream connections checked out
        of the pools, idle pooled upstream connections), read on the loop itself."""

        async def read() -> tuple[int, int, int, int]:
            acquired = idle = 0
            for upstream in self.app.upstreams.values():
                # With stream_transport: lean, streaming calls have a client and a pool of
                # their own, counted the same way.
                if upstream.stream_http is not upstream.http:
                    lean: Any = upstream.stream_http._transport
                    busy, parked = lean.census()
                    acquired += busy
                    idle += parked
                # The pool is aiohttp's connector inside the upstream's client: its
                # acquired set is the one number that shows a connection never released.
                session = upstream.http._transport._session
                if session is None:
                    continue
                connector: Any = session.connector
                acquired += len(connector._acquired)
                idle += sum(len(conns) for conns in connector._conns.values())
            # Minus one: this reading coroutine runs as a task of its own.
            return len(asyncio.all_tasks()) - 1, self.app.in_flight, acquired, idle

        return self.on_loop(read)


# --------------------------------------------------------------------------- census


def _socket_inodes() -> set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


_LISTEN = "0A"


def tcp_sockets() -> list[tuple[int, int, str]]:
    """(local port, remote port, state) of every TCP socket this process holds open."""
    mine = _socket_inodes()
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                cols = line.split()
                if cols[9] in mine:
                    local = int(cols[1].rsplit(":", 1)[1], 16)
                    remote = int(cols[2].rsplit(":", 1)[1], 16)
                    found.append((local, remote, cols[3]))
    return found


@dataclass(frozen=True)
class Census:
    """Everything that would grow if a cell leaked a connection, a socket or a task."""

    tasks: int
    in_flight: int
    acquired: int
    idle: int
    upstream_open: int  # connections the fake upstream still holds
    to_upstream: int  # the gateway's sockets to the fake upstream
    from_callers: int  # sockets the gateway accepted from callers, still open
    callers: int  # the test's own caller sockets, still open
    fds: int


def census(gateway: InspectableGateway, fake: FakeUpstream) -> Census:
    tasks, in_flight, acquired, idle = gateway.inside()
    socks = tcp_sockets()
    return Census(
        tasks=tasks,
        in_flight=in_flight,
        acquired=acquired,
        idle=idle,
        upstream_open=fake.open_connections,
        to_upstream=sum(1 for _, remote, _ in socks if remote == fake.port),
        from_callers=sum(1 for local, _, st in socks if local == gateway.port and st != _LISTEN),
        callers=sum(1 for _, remote, _ in socks if remote == gateway.port),
        fds=len(os.listdir("/proc/self/fd")),
    )


def leaks(before: Census, after: Census) -> list[str]:
    """What ``after`` holds that it should not, given ``before``; empty when clean.

    Idle keep-alive connections in the gateway's pool are not leaks, but each must be
    accounted for on both ends (one socket in the gateway, one held by the fake upstream)
    and they are the only file descriptors allowed to appear (two per connection, since
    both ends live in this process).
    """
    problems = []
    if after.tasks != before.tasks:
        problems.append(f"asyncio tasks {before.tasks} -> {after.tasks}")
    if after.in_flight:
        problems.append(f"{after.in_flight} call(s) still in flight")
    if after.acquired:
        problems.append(f"{after.acquired} upstream connection(s) never released")
    if not after.to_upstream == after.idle == after.upstream_open:
        problems.append(
            f"upstream sockets {after.to_upstream}, pooled {after.idle}, "
            f"open at the upstream {after.upstream_open}"
        )
    if after.from_callers or after.callers:
        problems.append(f"caller sockets open: {after.from_callers} / {after.callers}")
    expected_fds = before.fds + 2 * (after.idle - before.idle)
    if after.fds != expected_fds:
        problems.append(f"file descriptors {before.fds} -> {after.fds} (expected {expected_fds})")
    return problems


def settle(gateway: InspectableGateway, fake: FakeUpstream, before: Census) -> Census:
    """Wait (bounded) until the cell left nothing behind; fail with the census if not."""
    deadline = time.monotonic() + SETTLE
    while True:
        after = census(gateway, fake)
        problems = leaks(before, after)
        if not problems:
            return after
        if time.monotonic() > deadline:
            raise AssertionError("leak: " + "; ".join(problems))
        time.sleep(0.02)


# --------------------------------------------------------------------------- logs


class Cell:
    """One cell's bookkeeping: the census before it, the access line it produced."""

    def __init__(self, gateway: InspectableGateway, fake: FakeUpstream, logs: LogCapture) -> None:
        self.gateway, self.fake, self.logs = gateway, fake, logs
        fake.reset()
        self.lines = len(logs.access)
        self.before: Census = census(gateway, fake)

        self.lines_expected = 1
        self.warnings_expected: list[str] = []

    def access_line(self) -> dict[str, Any]:
        return self.logs.wait_access(self.lines + 1)

    def finish(self) -> None:
        """No leak, the access lines expected, no warning or traceback unless expected."""
        settle(self.gateway, self.fake, self.before)
        assert len(self.logs.access) == self.lines + self.lines_expected, self.logs.access[
            self.lines :
        ]
        assert [r.getMessage() for r in self.logs.other] == self.warnings_expected
        assert not self.fake.errors


class LogCapture(logging.Handler):
    """Keeps the gateway's access lines (decoded) and any other record it logs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.cond = threading.Condition()
        self.access: list[dict[str, Any]] = []
        self.other: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self.cond:
            if record.name == "aifetch.gateway.access":
                self.access.append(msgspec.json.decode(record.getMessage()))
            elif record.levelno >= logging.WARNING:
                self.other.append(record)
            self.cond.notify_all()

    def wait_access(self, count: int) -> dict[str, Any]:
        """The ``count``-th access line (1-based), once it was written."""
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.access) >= count, HANG):
                raise AssertionError(f"no access log line #{count} within {HANG} s")
            return self.access[count - 1]


@contextlib.contextmanager
def captured_logs() -> Iterator[LogCapture]:
    logger = logging.getLogger("aifetch.gateway")
    handler = LogCapture()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# --------------------------------------------------------------------------- caller


def request_head(
    body_length: int | None,
    *,
    path: str = CHAT,
    extra: list[tuple[str, str]] | None = None,
) -> bytes:
    """A POST head; ``body_length`` ``None`` means a chunked body."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if body_length is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {body_length}")
    lines.extend(f"{name}: {value}" for name, value in extra or [])
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class Answer:
    """What the caller saw: status, headers (lower-case names) and the de-chunked body."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    complete: bool = False  # the body's framing ended properly (last chunk / length)

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


@dataclass
class RawCaller:
    """One HTTP/1.1 exchange on a plain socket, read incrementally."""

    port: int
    rcvbuf: int | None = None
    sock: socket.socket = field(init=False)
    buf: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf is not None:
            # Set before connect so the advertised window is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        self.sock.settimeout(HANG)
        self.sock.connect(("127.0.0.1", self.port))

    def __enter__(self) -> RawCaller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def _fill(self, size: int = 65536) -> bool:
        data = self.sock.recv(size)
        self.buf += data
        return bool(data)

    def head(self) -> Answer:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if not self._fill():
                raise ConnectionError(f"connection closed before a response head: {self.buf!r}")
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Answer(int(lines[0].split(" ")[1]), headers)

    def pieces(self, answer: Answer, read_size: int = 65536) -> Iterator[bytes]:
        """The body's pieces as they arrive; sets ``answer.complete`` at its proper end."""
        if "content-length" in answer.headers:
            left = int(answer.headers["content-length"])
            while left:
                if not self.buf and not self._fill(read_size):
                    return
                piece = bytes(self.buf[:left])
                del self.buf[: len(piece)]
                left -= len(piece)
                yield piece
            answer.complete = True
            return
        while True:
            while (eol := self.buf.find(b"\r\n")) < 0:
                if not self._fill(read_size):
                    return
            size = int(self.buf[:eol].split(b";")[0], 16)
            while len(self.buf) < eol + 2 + size + 2:
                if not self._fill(read_size):
                    return
            piece = bytes(self.buf[eol + 2 : eol + 2 + size])
            del self.buf[: eol + 2 + size + 2]
            if size == 0:
                answer.complete = True
                return
            yield piece

    def read_until(self, answer: Answer, marker: bytes) -> bytes:
        """Body bytes read until ``marker`` appears among them (more may follow)."""
        got = b""
        for piece in self.pieces(answer):
            got += piece
            if marker in got:
                return got
        raise AssertionError(f"the body ended before {marker!r}: {got!r}")

    def answer(self) -> Answer:
        answer = self.head()
        answer.body = b"".join(self.pieces(answer))
        return answer


def post(port: int, payload: dict[str, Any]) -> Answer:
    """One well-behaved request; the connection is closed afterwards."""
    body = msgspec.json.encode(payload)
    with RawCaller(port) as caller:
        caller.send(request_head(len(body)) + body)
        return caller.answer()


def chat_body(model: str = "gpt", *, stream: bool) -> dict[str, Any]:
    """A chat request; a stream asks for usage so the gateway relays upstream bytes as is
    (without the request it strips the usage chunk, which a byte comparison would see)."""
    payload: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }
    if stream:
        payload["stream_options"] = {"include_usage": True}
    return payload


# --------------------------------------------------------------------------- streams


def blocks(data: bytes) -> list[bytes]:
    """SSE blocks of a relayed stream, each with its blank-line terminator."""
    return [part + b"\n\n" for part in data.split(b"\n\n") if part]


ERROR_PREFIX = b"event: error\ndata: "


def split_error(data: bytes) -> tuple[bytes, dict[str, Any] | None]:
    """(relayed upstream bytes, the gateway's final error object or ``None``).

    The gateway's error event, when present, must be the very last block.
    """
    at = data.rfind(ERROR_PREFIX)
    if at < 0:
        return data, None
    tail = data[at:]
    assert tail.endswith(b"\n\n"), tail
    assert tail.count(b"\n\n") == 1, f"the error event is not the last block: {tail!r}"
    error = msgspec.json.decode(tail[len(ERROR_PREFIX) : -2])["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    return data[:at], error
