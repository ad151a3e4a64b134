"""Non-stream chat completions through each client, against one fast loopback server.

Async, at concurrency 64 (64 tasks sharing one request budget): aifetch ``AsyncClient``
(plain, and with a bearer + retry pipe chain), raw aiohttp, and openai-python's
``AsyncOpenAI``. Sync, one thread, one request at a time: aifetch ``Client``,
``urllib3.PoolManager`` and ``httpx.Client``. Every call sends the same JSON body and parses
the same ``chat.completion`` reply, and its content is checked.

The server runs in its own process (``_servers.py``), so the CPU measured here is the
client's. The machine is shared and noisy, so the clients take turns in every round (the
order rotating round to round) and the report gives each round's ratios and their median.

    .venv/bin/python bench/bench_client.py            # the full run (~1-2 min)
    .venv/bin/python bench/bench_client.py --quick    # a smoke test (< 20 s)
    .venv/bin/python bench/bench_client.py --profile  # cProfile of aifetch's side only
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

# _servers sits beside this file: importable however the script is started.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import httpx
import openai
import urllib3
from _servers import CHAT_PATH, REPLY_TEXT, REQUEST_BODY, serve

import aifetch

RUN_LIMIT = 120.0  # seconds: one client's share of one round; past this the bench fails
AsyncCall = Callable[[], Awaitable[str]]
SyncCall = Callable[[], str]


@dataclass
class Result:
    name: str
    requests: int
    rates: list[float] = field(default_factory=list)  # req/s, one per round
    cpu_us: list[float] = field(default_factory=list)  # client CPU µs per request


# --- the async contenders ------------------------------------------------------------------
# Each factory returns (call, close); call() does one request and returns the reply text.


async def aifetch_plain(url: str) -> tuple[AsyncCall, Callable[[], Awaitable[None]]]:
    client = aifetch.AsyncClient()
    target = url + CHAT_PATH

    async def call() -> str:
        resp = await client.post(target, json=REQUEST_BODY)
        data = await resp.json()
        return data["choices"][0]["message"]["content"]  # type: ignore[no-any-return]

    return call, client.aclose


async def aifetch_pipes(url: str) -> tuple[AsyncCall, Callable[[], Awaitable[None]]]:
    client = aifetch.AsyncClient(pipes=[aifetch.pipes.bearer("sk-bench"), aifetch.pipes.retry(2)])
    target = url + CHAT_PATH

    async def call() -> str:
        resp = await client.post(target, json=REQUEST_BODY)
        data = await resp.json()
        return data["choices"][0]["message"]["content"]  # type: ignore[no-any-return]

    return call, client.aclose


async def aiohttp_raw(url: str) -> tuple[AsyncCall, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession()
    target = url + CHAT_PATH

    async def call() -> str:
        async with session.post(target, json=REQUEST_BODY) as resp:
            data = await resp.json()
        return data["choices"][0]["message"]["content"]  # type: ignore[no-any-return]

    return call, session.close


async def openai_python(url: str) -> tuple[AsyncCall, Callable[[], Awaitable[None]]]:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)

    async def call() -> str:
        completion = await client.chat.completions.create(**REQUEST_BODY)  # type: ignore[call-overload]
        return completion.choices[0].message.content  # type: ignore[no-any-return]

    return call, client.close


ASYNC_CONTENDERS = {
    "aifetch": aifetch_plain,
    "aifetch+pipes": aifetch_pipes,
    "aiohttp": aiohttp_raw,
    "openai-python": openai_python,
}


async def run_concurrent(call: AsyncCall, total: int, concurrency: int) -> tuple[float, float]:
    """``total`` calls by ``concurrency`` tasks; returns (wall seconds, CPU seconds)."""
    remaining = total
    wrong = 0

    async def worker() -> None:
        nonlocal remaining, wrong
        while remaining > 0:
            remaining -= 1
            if await call() != REPLY_TEXT:
                wrong += 1

    wall, cpu = time.perf_counter(), time.process_time()
    async with asyncio.timeout(RUN_LIMIT):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if wrong:
        raise AssertionError(f"{wrong} of {total} replies had the wrong content")
    return wall, cpu


async def bench_async(url: str, args: argparse.Namespace) -> list[Result]:
    results = [
        Result(name, args.openai_requests if name == "openai-python" else args.requests)
        for name in ASYNC_CONTENDERS
    ]
    clients = []
    try:
        for factory in ASYNC_CONTENDERS.values():
            clients.append(await factory(url))
            # Warm-up: fill the pool with `concurrency` connections before anything is timed.
            await run_concurrent(clients[-1][0], 2 * args.concurrency, args.concurrency)
        for round_no in range(args.rounds):
            for i in _rotated(range(len(results)), round_no):
                wall, cpu = await run_concurrent(
                    clients[i][0], results[i].requests, args.concurrency
                )
                results[i].rates.append(results[i].requests / wall)
                results[i].cpu_us.append(cpu / results[i].requests * 1e6)
            _print_round(round_no, results)
    finally:
        for _, close in clients:
            await close()
    return results


# --- the sync contenders -------------------------------------------------------------------


def sync_contenders(url: str) -> dict[str, tuple[SyncCall, Callable[[], None]]]:
    target = url + CHAT_PATH
    af = aifetch.Client()
    pool = urllib3.PoolManager()
    hx = httpx.Client()

    def call_aifetch() -> str:
        return af.post(target, json=REQUEST_BODY).json()["choices"][0]["message"]["content"]  # type: ignore[no-any-return]

    def call_urllib3() -> str:
        resp = pool.request("POST", target, json=REQUEST_BODY)
        return resp.json()["choices"][0]["message"]["content"]  # type: ignore[no-any-return]

    def call_httpx() -> str:
        return hx.post(target, json=REQUEST_BODY).json()["choices"][0]["message"]["content"]  # type: ignore[no-any-return]

    return {
        "aifetch (sync)": (call_aifetch, af.close),
        "urllib3": (call_urllib3, pool.clear),
        "httpx (sync)": (call_httpx, hx.close),
    }


def run_sequential(call: SyncCall, total: int) -> tuple[float, float]:
    deadline = time.monotonic() + RUN_LIMIT
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(total):
        if call() != REPLY_TEXT:
            raise AssertionError("a reply had the wrong content")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{total} sequential requests took over {RUN_LIMIT:g} s")
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_sync(url: str, args: argparse.Namespace) -> list[Result]:
    contenders = sync_contenders(url)
    results = [Result(name, args.sync_requests) for name in contenders]
    calls = list(contenders.values())
    try:
        for call, _ in calls:
            run_sequential(call, 50)  # warm-up: one connection each, code paths imported
        for round_no in range(args.rounds):
            for i in _rotated(range(len(results)), round_no):
                wall, cpu = run_sequential(calls[i][0], results[i].requests)
                results[i].rates.append(results[i].requests / wall)
                results[i].cpu_us.append(cpu / results[i].requests * 1e6)
            _print_round(round_no, results)
    finally:
        for _, close in calls:
            close()
    return results


# --- reporting -----------------------------------------------------------------------------


def _rotated(items: Sequence[int], by: int) -> list[int]:
    # A different client goes first each round, so none always gets the warmest (or the
    # noisiest) slot.
    shift = by % len(items)
    return [*items[shift:], *items[:shift]]


def _print_round(round_no: int, results: list[Result]) -> None:
    cells = ", ".join(f"{r.name} {r.rates[-1]:,.0f} req/s" for r in results)
    print(f"  round {round_no + 1}: {cells}", flush=True)


def report(title: str, results: list[Result], pairs: list[tuple[str, str, str]]) -> None:
    """A markdown table: req/s and CPU per request per client, then the ratios asked for.

    ``pairs`` are (numerator, denominator, target) by client name. Each ratio is given two
    ways: by throughput (a/b req/s) and by CPU (b/a CPU per request, so that larger is
    better in both). On a shared machine the CPU ratio is the steadier of the two.
    """
    by_name = {r.name: r for r in results}
    rounds = len(results[0].rates)
    print(f"\n### {title}\n")
    print(
        "| client | requests/round | "
        + " | ".join(f"r{i + 1} req/s" for i in range(rounds))
        + " | median req/s | median CPU µs/req |"
    )
    print("|---|---:|" + "---:|" * rounds + "---:|---:|")
    for r in results:
        per_round = " | ".join(f"{x:,.0f}" for x in r.rates)
        print(
            f"| {r.name} | {r.requests:,} | {per_round} | {statistics.median(r.rates):,.0f} | {statistics.median(r.cpu_us):,.0f} |"
        )
    print("\n| ratio | " + " | ".join(f"r{i + 1}" for i in range(rounds)) + " | median | target |")
    print("|---|" + "---:|" * rounds + "---:|---|")
    for num, den, target in pairs:
        a, b = by_name[num], by_name[den]
        for label, ratios in (
            ("req/s", [x / y for x, y in zip(a.rates, b.rates, strict=True)]),
            ("CPU/req", [y / x for x, y in zip(a.cpu_us, b.cpu_us, strict=True)]),
        ):
            cells = " | ".join(f"{x:.2f}" for x in ratios)
            print(
                f"| {num} / {den} ({label}) | {cells} | **{statistics.median(ratios):.2f}** | {target} |"
            )


# --- profile -------------------------------------------------------------------------------


async def _profiled(url: str, requests: int, concurrency: int) -> None:
    call, close = await aifetch_plain(url)
    try:
        await run_concurrent(call, 2 * concurrency, concurrency)
        profiler = cProfile.Profile()
        profiler.enable()
        wall, cpu = await run_concurrent(call, requests, concurrency)
        profiler.disable()
    finally:
        await close()
    print(
        f"aifetch under cProfile: {requests / wall:,.0f} req/s, {cpu / requests * 1e6:,.0f} CPU µs/req (inflated by the profiler)"
    )
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run, for smoke-testing")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=3_000, help="per async client per round")
    parser.add_argument(
        "--openai-requests", type=int, default=1_000, help="openai-python's budget (it is slow)"
    )
    parser.add_argument(
        "--sync-requests", type=int, default=1_500, help="per sync client per round"
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--no-sync", action="store_true", help="skip the sync clients")
    parser.add_argument("--profile", action="store_true", help="profile aifetch only, then exit")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests, args.openai_requests, args.sync_requests = 2, 300, 150, 150
    return args


def _run(args: argparse.Namespace, coro: Awaitable[object]) -> object:
    if args.loop == "uvloop":
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    return asyncio.run(coro)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with serve("chat") as url:
        if args.profile:
            _run(args, _profiled(url, args.requests, args.concurrency))
            return
        print(
            f"server {url}; python {sys.version.split()[0]}, {args.loop}; aiohttp {aiohttp.__version__}, openai {openai.__version__}, httpx {httpx.__version__}, urllib3 {version('urllib3')}"
        )
        print(f"async, concurrency {args.concurrency}, {args.rounds} rounds:", flush=True)
        async_results = _run(args, bench_async(url, args))
        assert isinstance(async_results, list)
        report(
            f"async, concurrency {args.concurrency}",
            async_results,
            [
                ("aifetch", "aiohttp", "≥ 0.8"),
                ("aifetch+pipes", "aiohttp", "≥ 0.8"),
                ("aifetch", "openai-python", "≥ 8"),
            ],
        )
        if args.no_sync:
            return
        print(f"\nsync, one thread, {args.rounds} rounds:", flush=True)
        sync_results = bench_sync(url, args)
        report(
            "sync, sequential",
            sync_results,
            [
                ("aifetch (sync)", "urllib3", "context"),
                ("aifetch (sync)", "httpx (sync)", "context"),
            ],
        )


if __name__ == "__main__":
    main()
