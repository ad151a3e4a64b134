"""``aifetch serve --workers 2``, the real command: ``/metrics`` at either worker shows
the calls both served, and on SIGTERM the streams of both workers end with the error
event. Which worker holds a connection is read from Linux ``/proc``."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.gateway.helpers import CHAT, chat
from tests.support.child import SERVE, Child

HANG = 30.0
WORKERS = 2
GRACE = 1.0
# A stream the mock takes 12 s over: far past the grace and uvicorn's own deadline (+5 s).
CHUNKS, INTERVAL = 48, 0.25


@dataclass
class Served:
    child: Child
    port: int

    def workers(self) -> list[int]:
        """The worker processes (children holding the listening socket)."""
        listening = _inodes(self.port, remote=None)
        return [pid for pid in _children(self.child.pid) if _holds(pid, listening)]


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _inodes(local_port: int, remote: int | None) -> set[str]:
    """Socket inodes on 127.0.0.1 with ``local_port``: listening (``remote`` None) or
    connected to ``remote``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, peer, state, inode = fields[1], fields[2], fields[3], fields[9]
        if int(local.split(":")[1], 16) != local_port:
            continue
        listening = state == "0A"
        if listening if remote is None else int(peer.split(":")[1], 16) == remote:
            inodes.add(inode)
    return inodes


def _holds(pid: int, inodes: set[str]) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def _owner(served: Served, sock: socket.socket) -> int:
    """The worker that accepted ``sock`` (still open), once one has."""
    deadline = time.monotonic() + HANG
    while True:
        inodes = _inodes(served.port, remote=sock.getsockname()[1])
        owner = next((pid for pid in served.workers() if _holds(pid, inodes)), None)
        if owner is not None:
            return owner
        assert time.monotonic() < deadline, "no worker accepted the connection"
        time.sleep(0.005)


@contextmanager
def _serve(tmp_path: Path) -> Iterator[Served]:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "upstreams:\n"
        f"  mock: {{kind: mock, mock: {{chunks: {CHUNKS}, interval: {INTERVAL}}}}}\n"
        "models: {mock-gpt: {targets: [{upstream: mock}]}}\n"
        f"server: {{heartbeat: 0, shutdown_grace: {GRACE}, access_log: false}}\n"
    )
    argv = [*SERVE, "--port", "0", "--workers", str(WORKERS), "--config", str(config)]
    with Child("aifetch serve", argv, tmp_path / "gateway.log") as child:
        served = Served(child, child.port())
        _wait(lambda: len(served.workers()) == WORKERS)
        _wait(lambda: child.output().count("Application startup complete") == WORKERS)
        yield served


def _wait(check: Callable[[], bool], timeout: float = HANG) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _request(method: str, path: str, body: bytes = b"") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


def _whole_answer(sock: socket.socket) -> bytes:
    sock.settimeout(HANG)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return body


def _on_each_worker(
    served: Served, send: bytes, per_worker: int = 1
) -> dict[int, list[socket.socket]]:
    """Open connections and send ``send`` on each until every worker holds
    ``per_worker`` of them; the sockets stay open (the caller closes them)."""
    held: dict[int, list[socket.socket]] = {pid: [] for pid in served.workers()}
    for _ in range(200):
        if all(len(socks) >= per_worker for socks in held.values()):
            return held
        sock = socket.create_connection(("127.0.0.1", served.port))
        sock.sendall(send)
        held[_owner(served, sock)].append(sock)
    raise AssertionError(f"connections did not reach every worker: {held}")


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


def test_metrics_at_each_worker_count_the_calls_of_all(tmp_path: Path) -> None:
    plain = _request("POST", CHAT, json.dumps(chat("mock-gpt", stream=False)).encode())
    with _serve(tmp_path) as served, ExitStack() as stack:
        held = _on_each_worker(served, plain, per_worker=3)
        calls = 0
        for socks in held.values():
            for sock in socks:
                stack.callback(sock.close)
                assert json.loads(_whole_answer(sock))["object"] == "chat.completion"
                calls += 1
        assert all(len(socks) >= 3 for socks in held.values())  # both workers served calls
        # Scrape until every worker has answered with the total of both.
        seen: dict[int, float] = {}
        deadline = time.monotonic() + HANG
        while len(seen) < WORKERS or min(seen.values()) != calls:
            assert time.monotonic() < deadline, (calls, seen)
            with socket.create_connection(("127.0.0.1", served.port)) as sock:
                sock.sendall(_request("GET", "/metrics"))
                text = _whole_answer(sock).decode()
                owner = _owner(served, sock)  # kept alive after the answer
            requests = _metric(
                text, 'aifetch_gateway_requests_total{model="mock-gpt",status="200"}'
            )
            assert requests <= calls  # never more than were made
            latency = _metric(text, 'aifetch_gateway_added_latency_seconds_count{model="mock-gpt"}')
            tokens = _metric(
                text, 'aifetch_gateway_tokens_total{caller="",kind="completion",model="mock-gpt"}'
            )
            seen[owner] = requests
            if requests == calls:
                assert latency == calls
                assert tokens == calls * CHUNKS
            time.sleep(0.05)


def test_sigterm_ends_the_streams_of_every_worker_with_an_error_event(tmp_path: Path) -> None:
    stream = _request("POST", CHAT, json.dumps(chat("mock-gpt", stream=True)).encode())
    with _serve(tmp_path) as served, ExitStack() as stack:
        held = _on_each_worker(served, stream, per_worker=2)
        socks = [sock for group in held.values() for sock in group]
        for sock in socks:
            stack.callback(sock.close)
            sock.settimeout(HANG)
            first = b""
            while b"data: " not in first:
                first += sock.recv(65536)
        started = time.monotonic()
        served.child.popen.send_signal(signal.SIGTERM)
        for pid, group in held.items():
            for sock in group:
                received = b""
                while chunk := sock.recv(65536):
                    received += chunk
                assert b"event: error" in received, (pid, received[-300:])
                assert b"shutting_down" in received
                assert b"[DONE]" not in received
        # At the grace, not at uvicorn's deadline or the stream's natural end.
        assert time.monotonic() - started < GRACE + 4
        assert served.child.popen.wait(timeout=HANG) in (0, -signal.SIGTERM)


def test_the_announced_port_is_the_one_bound(tmp_path: Path) -> None:
    # (`--port 0` used to be announced as port 0 with --workers.)
    with _serve(tmp_path) as served:
        assert served.port != 0
        with socket.create_connection(("127.0.0.1", served.port)) as sock:
            sock.sendall(_request("GET", "/healthz"))
            assert json.loads(_whole_answer(sock)) == {"status": "ok"}
