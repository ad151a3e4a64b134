"""Silent connections, measured on ``aifetch serve`` in its own process: more silent
sockets than ``limits.max_connections`` (and than the process's file-descriptor limit)
cost a bounded number of descriptors, and callers who send requests are served throughout.

The figures (descriptors before, at the peak and after; calls served; their latency) are
printed with ``-s`` and quoted in docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
import resource
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.gateway.helpers import CHAT, chat
from tests.support.child import SERVE, Child

HANG = 15.0


@contextmanager
def _gateway(
    tmp_path: Path, limits: str, preexec: Callable[[], None] | None = None
) -> Iterator[tuple[int, int]]:
    """``aifetch serve`` on a free port with ``limits``; yields (pid, port)."""
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "upstreams: {mock: {kind: mock}}\n"
        "models: {mock-gpt: {targets: [{upstream: mock}]}}\n"
        "server: {heartbeat: 0, shutdown_grace: 1, access_log: false}\n"
        f"limits: {limits}\n"
    )
    argv = [*SERVE, "--port", "0", "--config", str(config)]
    with Child("gateway", argv, tmp_path / "gateway.log", preexec) as gateway:
        yield gateway.pid, gateway.port()


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _flood_and_call(pid: int, port: int, silent: int, calls: int) -> dict[str, float]:
    """Open ``silent`` sockets that never send a byte, then make ``calls`` calls, each on
    a new connection; sample the gateway's descriptors all along."""
    before = _fds(pid)
    peak = before
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _fds(pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    latencies = []
    try:
        with ExitStack() as stack:
            strangers = [
                stack.enter_context(socket.create_connection(("127.0.0.1", port)))
                for _ in range(silent)
            ]
            for _ in range(calls):
                started = time.perf_counter()
                answer = httpx.post(
                    f"http://127.0.0.1:{port}{CHAT}", json=chat("mock-gpt", stream=False), timeout=5
                )
                latencies.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
            closed = 0
            for sock in strangers:
                sock.settimeout(0.001)
                try:
                    closed += sock.recv(1) == b""
                except ConnectionResetError:
                    closed += 1
                except TimeoutError:
                    pass
    finally:
        stop.set()
        sampler.join()
    return {
        "before": before,
        "peak": peak,
        "closed": closed,
        "p50_ms": statistics.median(latencies) * 1000,
        "max_ms": max(latencies) * 1000,
    }


def test_silent_sockets_past_the_configured_cap(tmp_path: Path) -> None:
    cap, silent = 64, 1000
    with _gateway(tmp_path, f"{{max_connections: {cap}, request_timeout: 60}}") as (pid, port):
        quiet = _flood_and_call(pid, port, 0, calls=20)
        figures = _flood_and_call(pid, port, silent, calls=20)
    print(f"\nno flood, 20 calls: {quiet}")
    print(f"cap {cap}, {silent} silent sockets, 20 calls: {figures}")
    # Each caller connection is one descriptor; a few are in flight while room is made.
    assert figures["peak"] <= figures["before"] + cap + 8
    assert figures["closed"] >= silent - cap


def test_silent_sockets_past_the_file_descriptor_limit(tmp_path: Path) -> None:
    # The reported case, scaled down: 1,100 silent sockets against a 256-descriptor limit
    # (it was 1,100 against 1,024), with the default limits.max_connections (4096).
    limit, silent = 256, 1100
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < limit:
        pytest.fail(f"the hard descriptor limit ({hard}) is below the {limit} this test sets")

    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

    with _gateway(tmp_path, "{request_timeout: 60}", preexec=lower_limit) as (pid, port):
        figures = _flood_and_call(pid, port, silent, calls=20)
    print(f"\nRLIMIT_NOFILE {limit}, {silent} silent sockets, 20 calls: {figures}")
    assert figures["peak"] < limit
    assert figures["closed"] >= silent - limit
