"""The gateway's own CPU per request, without an HTTP server: steadier than wrk's req/s.

The aifetch gateway app (``bench/gateway_bench.yaml``: auth, usage accounting, metrics) and
the bare passthrough app (``bench/passthrough.py``) are driven in this process by a small
ASGI caller: 32 concurrent callers sending the request wrk sends in ``bench_gateway.py``.
With ``--stream``, ``aifetch-lean`` runs beside them: the same app, its streaming calls on
the lean transport (``stream_transport: lean``).
Both stand in front of the fake upstream, which runs in another process on core 0; this
process runs on core 1. Rounds alternate between the two apps. Each round reports CPU
time per request (``time.process_time``); the difference is the gateway's own overhead,
which is what hot-path work changes. uvicorn's share, the same in both, is left out, so
the difference here is a few µs below the one in ``bench_gateway.py``'s CPU column.

    .venv/bin/python bench/gateway_overhead.py [--requests 20000] [--rounds 5]
    .venv/bin/python bench/gateway_overhead.py --canned    # our code alone, no sockets
    .venv/bin/python bench/gateway_overhead.py --shared    # metrics shared as --workers does
    .venv/bin/python bench/gateway_overhead.py --stream --requests 2000 --rounds 3 --warmup 20
    .venv/bin/python bench/gateway_overhead.py --client   # the client alone, aiohttp vs lean

For an exact count rather than a time, run one app under valgrind's instruction counter
(slow, ~3 ms per request) at two request counts and divide the difference by theirs:

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        .venv/bin/python bench/gateway_overhead.py --only aifetch --warmup 8 --rounds 1 \\
        --requests 512      # then 2560; (Ir(2560) - Ir(512)) / 2048 = instructions/request
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import msgspec
import uvloop
from bench_gateway import BENCH, PROXY_CORE, upstream_server
from passthrough import Passthrough

import aifetch
from aifetch._async._transport import RawResponse
from aifetch._headers import Headers
from aifetch.gateway import GatewayApp, create_app
from aifetch.gateway._config import load_config

App = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

CALLER_KEY = "sk-bench-caller-key"
BODY = b'{"model":"bench-model","messages":[{"role":"user","content":"hi"}]}'
HEADERS = [
    (b"host", b"127.0.0.1"),
    (b"content-type", b"application/json"),
    (b"authorization", b"Bearer " + CALLER_KEY.encode()),
    (b"content-length", str(len(BODY)).encode()),
]
CONCURRENCY = 32
# --stream: 200-chunk streams instead (the fake upstream's --chunks), read to their end.
STREAM = False
STREAM_BODY = BODY[:-1] + b',"stream":true}'
STREAM_HEADERS = [*HEADERS[:3], (b"content-length", str(len(STREAM_BODY)).encode())]


async def call(app: App) -> None:
    """One request through ``app``, as uvicorn would hand it over."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "headers": STREAM_HEADERS if STREAM else HEADERS,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent_body = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            body = STREAM_BODY if STREAM else BODY
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # a caller that stays: never disconnects
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    if status != 200:
        raise SystemExit(f"the app answered {status}")


async def load(app: App, requests: int) -> None:
    async def caller(count: int) -> None:
        for _ in range(count):
            await call(app)

    await asyncio.gather(*(caller(requests // CONCURRENCY) for _ in range(CONCURRENCY)))


async def cpu_per_request(app: App, requests: int) -> float:
    gc.collect()
    start = time.process_time()
    await load(app, requests)
    return (time.process_time() - start) / (requests // CONCURRENCY * CONCURRENCY) * 1e6


def _gateway(upstream_port: int, config: str, stream_transport: str | None = None) -> GatewayApp:
    """The app ``aifetch serve --config <config>`` would serve (bench/gateway_bench.yaml by
    default; bench/gateway_bench_governed.yaml with BENCH_STATE and BENCH_LEDGER set for
    limits and the ledger), its streaming calls on ``stream_transport`` when given."""
    os.environ.update(
        FAKE_UPSTREAM_URL=f"http://127.0.0.1:{upstream_port}/v1",
        FAKE_UPSTREAM_KEY="sk-bench-upstream",
        BENCH_CALLER_KEY=CALLER_KEY,
    )
    loaded = load_config(config)
    if stream_transport is not None:
        upstreams = {
            name: msgspec.structs.replace(upstream, stream_transport=stream_transport)
            for name, upstream in loaded.upstreams.items()
        }
        loaded = msgspec.structs.replace(loaded, upstreams=upstreams)
    return create_app(loaded)


class _CannedBody:
    __slots__ = ("_data", "done")

    def __init__(self, data: bytes) -> None:
        self._data, self.done = data, False

    async def read(self) -> bytes:
        data, self._data, self.done = self._data, b"", True
        return data

    async def aclose(self) -> None:
        self.done = True


class _CannedTransport:
    """Answers every request with the same response, at once: what is left to time is the
    gateway's and the client's own code (private client parts: this is a bench)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.head = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]

    async def send(self, request: Any, timeout: Any) -> RawResponse:
        headers = Headers._trusted(list(self.head))
        return RawResponse(200, "OK", headers, _CannedBody(self.body))  # type: ignore[arg-type]

    async def aclose(self) -> None:
        pass


async def canned(args: argparse.Namespace, upstream_port: int) -> None:
    """Wall time per call, one call at a time, of the aifetch app over a canned upstream."""
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
        body = BODY.replace(b"bench-model", b"gpt-4o-mini")
        async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
            answer = await r.read()
    gateway = _gateway(upstream_port, args.config)
    await gateway.start()
    for upstream in gateway.upstreams.values():
        upstream.client._transport = _CannedTransport(answer)  # type: ignore[assignment]
    try:
        for _ in range(args.warmup * CONCURRENCY):
            await call(gateway)
        best = float("inf")
        for i in range(1, args.rounds + 1):
            start = time.perf_counter()
            for _ in range(args.requests):
                await call(gateway)
            per_call = (time.perf_counter() - start) / args.requests * 1e9
            best = min(best, per_call)
            print(f"round {i}: {per_call:,.0f} ns per call", flush=True)
        print(f"best: {best:,.0f} ns per call (gateway and client code, no sockets)")
    finally:
        await gateway.aclose()


async def client_streams(args: argparse.Namespace, upstream_port: int) -> None:
    """CPU per 200-chunk stream of ``AsyncClient`` alone, read to its end, on each transport:
    no gateway, no server in this process; rounds alternate between the two."""
    url = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
    body = STREAM_BODY.replace(b"bench-model", b"gpt-4o-mini")
    headers = {"content-type": "application/json"}
    clients = {
        name: aifetch.AsyncClient(transport=name, headers=headers) for name in ("aiohttp", "lean")
    }

    async def one(client: aifetch.AsyncClient) -> None:
        resp = await client.fetch(url, method="POST", body=body)
        async for _ in resp.body:
            pass

    async def run(client: aifetch.AsyncClient, requests: int) -> float:
        async def caller() -> None:
            for _ in range(requests // CONCURRENCY):
                await one(client)

        gc.collect()
        start = time.process_time()
        await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
        return (time.process_time() - start) / (requests // CONCURRENCY * CONCURRENCY) * 1e6

    try:
        for client in clients.values():
            await run(client, args.warmup * CONCURRENCY)
        for i in range(1, args.rounds + 1):
            line = [f"{name} {await run(c, args.requests):.1f} µs" for name, c in clients.items()]
            print(f"round {i}: " + ", ".join(line) + " per stream", flush=True)
    finally:
        for client in clients.values():
            await client.aclose()


async def measure(args: argparse.Namespace, upstream_port: int) -> None:
    with contextlib.ExitStack() as stack:
        await _measure(args, upstream_port, stack)


async def _measure(
    args: argparse.Namespace, upstream_port: int, stack: contextlib.ExitStack
) -> None:
    apps: dict[str, App] = {}
    gateways: list[GatewayApp] = []
    passthrough = None
    if args.only in (None, "aifetch"):
        gateway = apps["aifetch"] = _gateway(upstream_port, args.config)
        await gateway.start()
        gateways.append(gateway)
        if args.shared:
            # What each `aifetch serve --workers N` process does (a snapshot a second).
            shared = stack.enter_context(tempfile.TemporaryDirectory(prefix="aifetch-bench-"))
            gateway.metrics.share(shared)
    if args.only in (None, "aifetch-lean") and STREAM:
        # Only streaming calls take the lean transport: without --stream it is aifetch.
        lean = apps["aifetch-lean"] = _gateway(upstream_port, args.config, "lean")
        await lean.start()
        gateways.append(lean)
    if args.only in (None, "passthrough"):
        passthrough = Passthrough(f"http://127.0.0.1:{upstream_port}")
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        passthrough.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        apps["passthrough"] = passthrough
    try:
        for app in apps.values():
            await load(app, args.warmup * CONCURRENCY)
        rounds: dict[str, list[float]] = {name: [] for name in apps}
        for i in range(1, args.rounds + 1):
            line = []
            for name, app in apps.items():
                rounds[name].append(await cpu_per_request(app, args.requests))
                line.append(f"{name} {rounds[name][-1]:.1f} µs")
            if "passthrough" in apps:
                for name in (n for n in apps if n.startswith("aifetch")):
                    gap = rounds[name][-1] - rounds["passthrough"][-1]
                    ratio = rounds[name][-1] / rounds["passthrough"][-1]
                    line.append(f"{name}'s own {gap:+.1f} µs ({ratio:.2f}x)")
            print(f"round {i}: " + ", ".join(line), flush=True)
        best = {name: min(values) for name, values in rounds.items()}
        print(
            "best: " + ", ".join(f"{name} {value:.1f} µs/request" for name, value in best.items())
        )
        if "passthrough" in apps:
            for name in (n for n in apps if n.startswith("aifetch")):
                pairs = zip(rounds[name], rounds["passthrough"], strict=True)
                gaps, ratios = zip(*((a - p, a / p) for a, p in pairs), strict=True)
                print(
                    f"{name}'s own CPU per request, median of rounds: "
                    f"{statistics.median(gaps):.1f} µs; {name}/passthrough CPU per request "
                    f"{min(ratios):.2f}-{max(ratios):.2f}x"
                )
    finally:
        for gateway in gateways:
            await gateway.aclose()
        if passthrough is not None and passthrough.session is not None:
            await passthrough.session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="per app and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=200, help="requests per caller first")
    parser.add_argument("--only", choices=["aifetch", "aifetch-lean", "passthrough"])
    parser.add_argument(
        "--config",
        default=str(BENCH / "gateway_bench.yaml"),
        help="the aifetch app's config (bench/gateway_bench_governed.yaml: limits and the "
        "ledger, with BENCH_STATE and BENCH_LEDGER set)",
    )
    parser.add_argument(
        "--shared",
        action="store_true",
        help="share the gateway's metrics through a directory, as each --workers process does",
    )
    parser.add_argument(
        "--stream", action="store_true", help="CPU per 200-chunk stream rather than per request"
    )
    parser.add_argument(
        "--client",
        action="store_true",
        help="CPU per 200-chunk stream of the client alone, on aiohttp and on the lean transport",
    )
    parser.add_argument(
        "--canned",
        action="store_true",
        help="time the aifetch app alone: its upstream answers at once, without a socket",
    )
    args = parser.parse_args()
    global STREAM
    STREAM = args.stream
    os.sched_setaffinity(0, {int(PROXY_CORE)})
    with upstream_server() as (port, _pid):
        if args.client:
            uvloop.run(client_streams(args, port))
        else:
            uvloop.run(canned(args, port) if args.canned else measure(args, port))


if __name__ == "__main__":
    main()
