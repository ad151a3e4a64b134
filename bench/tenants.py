"""What strangers and a greedy tenant cost the other callers, measured on a real gateway.

Three figures for docs/RELIABILITY.md, each against an ``aifetch serve`` process in front
of the fake upstream (both children of this script, on 127.0.0.1, stopped by PID):

* **keyless uploads**: ``--uploads`` connections each announce a 4 MiB JSON body with no
  key and send its first 64 KiB; the gateway's RSS before, while they are open, and after
  (the key is checked before any body is read, so none is buffered);
* **a greedy tenant**: caller ``greedy`` holds ``--streams`` long streams (more than its
  share of the upstream's connections: the rest wait for a slot) while caller ``polite``
  makes ``--calls`` plain calls one after another: its latency p50/p99, beside the same
  calls with nobody else on the gateway;
* **silent connections**: ``--silent`` connections that never send a byte, under a
  connection cap, while ``polite`` still gets its answers.

    .venv/bin/python bench/tenants.py [--uploads 250] [--streams 80] [--calls 200]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.proof._load_support import raise_fd_limit
from tests.support.child import Child

PYTHON = sys.executable
GREEDY, POLITE = "sk-tenant-greedy-0123456789", "sk-tenant-polite-0123456789"
CONFIG = """
upstreams:
  fake:
    base_url: {upstream}/v1
    api_key: sk-tenant-upstream-0123456789
    max_connections: 40
    timeout: {{pool: 30, first_byte: 30, idle: 30}}
models:
  gpt:
    targets: [{{upstream: fake}}]
callers:
  - {{name: greedy, key: {greedy}}}
  - {{name: polite, key: {polite}}}
limits:
  max_connections: {cap}
server:
  access_log: false
  heartbeat: 0
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def services(tmp: Path, cap: int) -> Iterator[tuple[Child, str]]:
    upstream = Child(
        "upstream",
        [PYTHON, "-m", "tests.support.fake_upstream", "--port", "0", "--chunks", "2000",
         "--chunk-delay", "0.01"],
        tmp / "upstream.log",
    )  # fmt: skip
    try:
        url = upstream.wait_for(r"(http://127\.0\.0\.1:\d+)").group(1)
        config = tmp / "gateway.yaml"
        config.write_text(CONFIG.format(upstream=url, greedy=GREEDY, polite=POLITE, cap=cap))
        gateway = Child(
            "gateway",
            [PYTHON, "-m", "aifetch.gateway._cli", "serve", "--config", str(config),
             "--port", "0"],
            tmp / "gateway.log",
        )  # fmt: skip
        try:
            port = int(gateway.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
            yield gateway, f"http://127.0.0.1:{port}"
        finally:
            gateway.stop()
    finally:
        upstream.stop()


def _call(client: httpx.Client, url: str, key: str) -> float:
    body = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
    started = time.perf_counter()
    answer = client.post(url + "/v1/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise RuntimeError(f"polite call failed: {answer.status_code} {answer.text[:200]}")
    return elapsed


def latencies(url: str, calls: int) -> tuple[float, float]:
    with httpx.Client(timeout=30) as client:
        times = [_call(client, url, POLITE) for _ in range(calls)]
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def keyless_uploads(pid: int, url: str, count: int) -> str:
    host, port = url.removeprefix("http://").split(":")
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {4 * 1024 * 1024}\r\n\r\n"
    ).encode()
    before = rss_mb(pid)
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.send(head + b'{"model": "gpt", "x": "' + b"a" * 65536)
            socks.append(sock)
        time.sleep(1.0)
        during = rss_mb(pid)
    finally:
        for sock in socks:
            sock.close()
    time.sleep(1.0)
    return (f"{count} keyless 4 MiB uploads: gateway RSS {before:.1f} MB before, "
            f"{during:.1f} MB while open (+{during - before:.1f}), {rss_mb(pid):.1f} MB after")  # fmt: skip


def greedy_tenant(url: str, streams: int, calls: int) -> str:
    alone = latencies(url, calls)
    body = b'{"model":"gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    stop = threading.Event()

    def hold() -> None:
        with contextlib.suppress(httpx.HTTPError), httpx.Client(timeout=60) as client:
            headers = {"Authorization": f"Bearer {GREEDY}", "Content-Type": "application/json"}
            with client.stream("POST", url + "/v1/chat/completions", content=body,
                               headers=headers) as response:  # fmt: skip
                for _ in response.iter_raw():
                    if stop.is_set():
                        return

    threads = [threading.Thread(target=hold, daemon=True) for _ in range(streams)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    try:
        busy = latencies(url, calls)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    return (f"polite's {calls} calls alone: p50 {alone[0]:.1f} ms, p99 {alone[1]:.1f} ms; "
            f"while greedy holds {streams} streams (40 connections, 20 each): "
            f"p50 {busy[0]:.1f} ms, p99 {busy[1]:.1f} ms")  # fmt: skip


def silent_connections(url: str, count: int, calls: int) -> str:
    host, port = url.removeprefix("http://").split(":")
    socks = [socket.create_connection((host, int(port)), timeout=10) for _ in range(count)]
    try:
        time.sleep(0.5)
        p50, p99 = latencies(url, calls)
    finally:
        for sock in socks:
            sock.close()
    return f"{count} silent connections under a cap of 64: polite's calls p50 {p50:.1f} ms, p99 {p99:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=250)
    parser.add_argument("--streams", type=int, default=80)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--silent", type=int, default=1000)
    args = parser.parse_args()
    raise_fd_limit(8192)
    with tempfile.TemporaryDirectory() as tmp:
        with services(Path(tmp), cap=4096) as (gateway, url):
            print(keyless_uploads(gateway.pid, url, args.uploads), flush=True)
            print(greedy_tenant(url, args.streams, args.calls), flush=True)
        with services(Path(tmp), cap=64) as (_gateway, url):
            print(silent_connections(url, args.silent, args.calls // 4), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
