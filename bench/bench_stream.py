"""Reading one long chat completion stream (20,000 chunks + [DONE]) with each client.

Contenders, one stream at a time:

* aifetch ``ChatStream`` over ``AsyncClient``: typed ``ChatCompletionChunk`` objects,
  accumulated as they pass; ``final()`` is taken and its text checked, inside the timing.
* aifetch ``resp.events()``: decoded ``ServerSentEvent`` objects only, no JSON.
* aiohttp ``resp.content.iter_any()``: bytes only, no parsing at all; the floor.
* openai-python ``AsyncOpenAI(...).chat.completions.create(stream=True)``: its chunks.

The server (``_servers.py``, another process) writes pre-built bytes as fast as the
socket takes them, so the time measured is the client's. Reported: chunks/s, client CPU
per 1,000 chunks (``time.process_time()``), and per-round ratios with their median; the
clients take turns in every round, the order rotating, since the machine is shared.

    .venv/bin/python bench/bench_stream.py            # the full run (~1 min)
    .venv/bin/python bench/bench_stream.py --quick    # a smoke test (< 20 s)
    .venv/bin/python bench/bench_stream.py --profile  # cProfile of aifetch's ChatStream
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# _servers sits beside this file: importable however the script is started.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import openai
from _servers import CHAT_PATH, REQUEST_BODY, serve, stream_events, stream_text

import aifetch
from aifetch.openai import ChatStream

RUN_LIMIT = 120.0  # seconds: one client's share of one round; past this the bench fails
STREAM_BODY = {**REQUEST_BODY, "stream": True}
# read() -> how many units it saw (chunks, events or bytes), checked against `expect`.
ReadOnce = Callable[[], Awaitable[int]]


@dataclass
class Contender:
    name: str
    read: ReadOnce
    expect: int
    streams: int  # streams read per round: more for the fast ones, so a round is not ~0.1 s
    rates: list[float] = field(default_factory=list)  # chunks/s, one per round
    cpu_ms: list[float] = field(default_factory=list)  # client CPU ms per 1,000 chunks


def make_contenders(
    url: str, chunks: int, fast_streams: int
) -> tuple[list[Contender], Callable[[], Awaitable[None]]]:
    target = url + CHAT_PATH
    af = aifetch.AsyncClient()
    session = aiohttp.ClientSession()
    oai = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    text = stream_text(chunks)

    async def aifetch_chat_stream() -> int:
        resp = await af.post(target, json=STREAM_BODY)
        stream = ChatStream(resp)
        count = 0
        async for _chunk in stream:
            count += 1
        if stream.final().choices[0].message.content != text:
            raise AssertionError("ChatStream's accumulated text is not what was sent")
        return count

    async def aifetch_events() -> int:
        resp = await af.post(target, json=STREAM_BODY)
        count = 0
        async for event in resp.events():
            if event.data != "[DONE]":
                count += 1
        return count

    async def aiohttp_bytes() -> int:
        size = 0
        async with session.post(target, json=STREAM_BODY) as resp:
            async for data in resp.content.iter_any():
                size += len(data)
        return size

    async def openai_stream() -> int:
        stream = await oai.chat.completions.create(**STREAM_BODY)  # type: ignore[call-overload]
        count = 0
        async for _chunk in stream:
            count += 1
        return count

    async def close() -> None:
        await af.aclose()
        await session.close()
        await oai.close()

    contenders = [
        Contender("aifetch ChatStream", aifetch_chat_stream, chunks, fast_streams),
        Contender("aifetch events()", aifetch_events, chunks, fast_streams),
        Contender("aiohttp bytes (floor)", aiohttp_bytes, len(stream_events(chunks)), fast_streams),
        Contender("openai-python", openai_stream, chunks, 1),
    ]
    return contenders, close


async def measure(contender: Contender, chunks: int) -> tuple[float, float]:
    """Read ``contender.streams`` streams; returns (chunks/s, CPU ms per 1,000 chunks)."""
    wall, cpu = time.perf_counter(), time.process_time()
    async with asyncio.timeout(RUN_LIMIT):
        for _ in range(contender.streams):
            seen = await contender.read()
            if seen != contender.expect:
                raise AssertionError(f"{contender.name} saw {seen}, expected {contender.expect}")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    total = chunks * contender.streams
    return total / wall, cpu / total * 1e6


async def bench(url: str, args: argparse.Namespace) -> list[Contender]:
    contenders, close = make_contenders(url, args.chunks, args.fast_streams)
    try:
        for contender in contenders:
            await contender.read()  # warm-up: a pooled connection, lazy imports done
        for round_no in range(args.rounds):
            shift = round_no % len(contenders)
            # A different client goes first each round, so none always gets the same slot.
            for contender in contenders[shift:] + contenders[:shift]:
                rate, cpu_ms = await measure(contender, args.chunks)
                contender.rates.append(rate)
                contender.cpu_ms.append(cpu_ms)
            cells = ", ".join(f"{c.name} {c.rates[-1]:,.0f}/s" for c in contenders)
            print(f"  round {round_no + 1}: {cells}", flush=True)
    finally:
        await close()
    return contenders


def report(contenders: list[Contender], chunks: int) -> None:
    by_name = {c.name: c for c in contenders}
    rounds = len(contenders[0].rates)
    print(f"\n### reading a {chunks:,}-chunk stream\n")
    print(
        "| client | streams/round | "
        + " | ".join(f"r{i + 1} chunks/s" for i in range(rounds))
        + " | median chunks/s | median CPU ms / 1k chunks |"
    )
    print("|---|---:|" + "---:|" * rounds + "---:|---:|")
    for c in contenders:
        per_round = " | ".join(f"{x:,.0f}" for x in c.rates)
        print(
            f"| {c.name} | {c.streams} | {per_round} | {statistics.median(c.rates):,.0f} | {statistics.median(c.cpu_ms):.2f} |"
        )
    print("\n| ratio | " + " | ".join(f"r{i + 1}" for i in range(rounds)) + " | median | target |")
    print("|---|" + "---:|" * rounds + "---:|---|")
    for num, den, target in (
        ("aifetch ChatStream", "openai-python", "≥ 10"),
        ("aifetch events()", "openai-python", ""),
        ("aifetch ChatStream", "aiohttp bytes (floor)", "(≤ 1: the floor)"),
    ):
        a, b = by_name[num], by_name[den]
        # Both ways round larger is better: throughput a/b, and CPU per chunk b/a.
        for label, ratios in (
            ("chunks/s", [x / y for x, y in zip(a.rates, b.rates, strict=True)]),
            ("CPU/chunk", [y / x for x, y in zip(a.cpu_ms, b.cpu_ms, strict=True)]),
        ):
            cells = " | ".join(f"{x:.2f}" for x in ratios)
            print(
                f"| {num} / {den} ({label}) | {cells} | **{statistics.median(ratios):.2f}** | {target} |"
            )


async def profiled(url: str, args: argparse.Namespace) -> None:
    contenders, close = make_contenders(url, args.chunks, args.fast_streams)
    chat_stream = contenders[0]
    try:
        await chat_stream.read()
        profiler = cProfile.Profile()
        profiler.enable()
        rate, cpu_ms = await measure(chat_stream, args.chunks)
        profiler.disable()
    finally:
        await close()
    print(
        f"ChatStream under cProfile: {rate:,.0f} chunks/s, {cpu_ms:.2f} CPU ms / 1k chunks (inflated by the profiler)"
    )
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run, for smoke-testing")
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument(
        "--fast-streams",
        type=int,
        default=5,
        help="streams per round for the aifetch and aiohttp readers",
    )
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument(
        "--profile", action="store_true", help="profile aifetch's ChatStream only, then exit"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.chunks, args.rounds, args.fast_streams = 2_000, 2, 2
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run: Callable[[Coroutine[Any, Any, Any]], Any] = asyncio.run
    if args.loop == "uvloop":
        import uvloop

        run = uvloop.run
    with serve("stream", chunks=args.chunks) as url:
        if args.profile:
            run(profiled(url, args))
            return
        print(
            f"server {url}; python {sys.version.split()[0]}, {args.loop}; aiohttp {aiohttp.__version__}, openai {openai.__version__}"
        )
        print(f"{args.chunks:,} chunks a stream, {args.rounds} rounds:", flush=True)
        contenders = run(bench(url, args))
        report(contenders, args.chunks)


if __name__ == "__main__":
    main()
