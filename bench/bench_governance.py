"""What governance costs per call, without the gateway around it.

- **admission + settle** per call, for a caller with rpm + tpm + max_streams + a budget
  (four counters) on memory state and on Redis: µs per call one at a time, and calls/s
  with 32 calls in flight. The "no limits" line is the fast path of a caller without
  limits. Settlements are flushed (Redis) before the clock stops.
- **ledger writes**: rows/s from ``record`` of the first row to the last one written, for
  SQLite (WAL, one writer thread) and PostgreSQL (binary COPY), batches of 1,000.

Each backend gets its own Redis key prefix / PostgreSQL schema / SQLite file, removed
after. Runs on uvloop, like the gateway. Best of ``--rounds``.

    .venv/bin/python bench/bench_governance.py            # ~30 s
    .venv/bin/python bench/bench_governance.py --quick    # a smoke test (< 10 s)
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from aifetch.gateway import GatewayConfig, parse_config
from aifetch.gateway.governance import Estimate, Governor, LedgerRow, Usage

MODELS = {"m1": {"targets": [{"upstream": "mock"}], "price": {"input": 0.15, "output": 0.6}}}
LIMITS = {"rpm": 10**9, "tpm": 10**12, "max_streams": 10**6, "budget": {"usd": 10**6}}
CONCURRENCY = 32


def _config(**sections: Any) -> GatewayConfig:
    raw: dict[str, Any] = {"upstreams": {"mock": {"kind": "mock"}}, "models": MODELS}
    raw.update(sections)
    return parse_config(raw, env={})


async def _calls(gov: Governor, name: str, total: int, concurrency: int) -> float:
    """Seconds for ``total`` admit + settle pairs, ``concurrency`` at a time."""
    who = gov.caller(name)
    assert who is not None
    estimate, usage = Estimate(200, 300), Usage(180, 120)
    per_task = total // concurrency

    async def worker() -> None:
        for _ in range(per_task):
            admission = await gov.admit(who, "m1", estimate, True)
            gov.settle(admission, usage)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await gov.flush()
    return time.perf_counter() - started


async def bench_admission(label: str, config: GatewayConfig, calls: int, rounds: int) -> None:
    gov = Governor(config)
    await gov.start()
    try:
        for name, caller in (("no limits", "free"), ("4 limits", "limited")):
            await _calls(gov, caller, 200, 1)  # warm up (connections, script cache)
            seq = min([await _calls(gov, caller, calls // 4, 1) for _ in range(rounds)])
            con = min([await _calls(gov, caller, calls, CONCURRENCY) for _ in range(rounds)])
            us = seq / (calls // 4) * 1e6
            print(
                f"  {label:<7} {name:<10} {us:8.1f} µs/call sequential   "
                f"{calls / con:10,.0f} calls/s at concurrency {CONCURRENCY}"
            )
    finally:
        await gov.aclose()


def _row(i: int) -> LedgerRow:
    return LedgerRow(
        ts=time.time(),
        request_id=f"req-{i}",
        caller="webapp",
        model="m1",
        upstream="openai",
        status=200,
        duration_ms=123.4,
        ttft_ms=45.6,
        stream=True,
        prompt_tokens=812,
        completion_tokens=211,
        cost_nano_usd=248_400,
    )


async def bench_ledger(label: str, url: str, rows: int, rounds: int) -> None:
    best = float("inf")
    for _ in range(rounds):
        config = _config(ledger=url, governance={"ledger_buffer": rows, "ledger_batch": 1000})
        gov = Governor(config)
        await gov.start()
        assert gov.ledger is not None
        started = time.perf_counter()
        for i in range(rows):
            gov.record(_row(i))
            if i % 1000 == 999:
                await asyncio.sleep(0)  # requests arrive over time: the writer runs meanwhile
        while gov.ledger.written < rows:  # noqa: ASYNC110 - polls a counter, no event to wait on
            await asyncio.sleep(0.001)
        best = min(best, time.perf_counter() - started)
        await gov.aclose()
    print(f"  {label:<10} {rows / best:10,.0f} rows/s ({rows:,} rows, batches of 1,000)")


async def _cleanup_redis(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def _pg(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def main_async(args: argparse.Namespace) -> None:
    callers = [
        {"name": "free", "key": "k0"},
        {"name": "limited", "key": "k1", "limits": LIMITS},
    ]
    print(f"admission + settle ({args.calls:,} calls at concurrency {CONCURRENCY}):")
    await bench_admission("memory", _config(callers=callers), args.calls, args.rounds)
    prefix = f"bench:{secrets.token_hex(4)}:"
    try:
        config = _config(callers=callers, state=args.redis, governance={"prefix": prefix})
        await bench_admission("redis", config, args.calls, args.rounds)
    finally:
        await _cleanup_redis(args.redis, prefix)

    print("ledger writes:")
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'usage.db'}"
        await bench_ledger("sqlite", url, args.rows, args.rounds)
    schema = f"bench_{secrets.token_hex(4)}"
    await _pg(args.postgres, f"CREATE SCHEMA {schema}")
    try:
        url = f"{args.postgres}?search_path={schema}"
        from aifetch.gateway.governance._ledger import open_database

        db = open_database(url, check_schema=False)
        await db.connect()
        await db.migrate()
        await db.close()
        await bench_ledger("postgresql", url, args.rows, args.rounds)
    finally:
        await _pg(args.postgres, f"DROP SCHEMA {schema} CASCADE")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="few calls and rows, one round")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.rows, args.rounds = 3200, 5000, 1
    import uvloop

    run: Callable[[Awaitable[None]], None] = uvloop.run  # type: ignore[assignment]
    run(main_async(args))


if __name__ == "__main__":
    main()
