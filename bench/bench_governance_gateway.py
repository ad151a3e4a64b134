"""What governance costs through the gateway: limits and the ledger on, side by side with
the gateway without them and the bare passthrough, in one run.

Targets, each in front of the same fake upstream (bench/bench_gateway.py's machinery:
the proxies pinned to core 1, wrk, this script and the upstream on core 0):

    direct                    the fake upstream itself (the baseline of "added")
    passthrough               bench/passthrough.py: raw ASGI + aiohttp (the floor)
    aifetch                   bench/gateway_bench.yaml: no governance
    aifetch+memory            bench/gateway_bench_governed.yaml without its ledger: the
                              limits alone, on memory state (what the ledger adds is the
                              difference to the next row; no target of its own)
    aifetch+memory+sqlite     bench/gateway_bench_governed.yaml, state: memory, a SQLite
                              ledger in a temporary folder
    aifetch+redis+postgresql  the same config, state: Redis (a key prefix of the run's own)
                              and a PostgreSQL ledger (a schema of the run's own, made with
                              `aifetch ledger migrate`)

The governed caller has all four limits (rpm, tpm, max_streams, a budget), high enough
never to refuse: every call is admitted against its counters, settled, and leaves a ledger
row. Before timing, each governed target must answer with the x-ratelimit-* headers;
after, its /metrics must show ledger rows written and none dropped.

Per target, as bench_gateway.py measures them: req/s and p50/p99 latency at concurrency
32 (wrk), sequential p50/p99 over one keep-alive connection, 200-chunk streams, and the
target's CPU per request (from /proc: steady when other work takes the core). The targets
stay up and are measured round-robin for ``--rounds`` rounds; the best round per number
is reported, then each governed target against the gateway without governance, round by
round, and the verdicts against the issue's targets:

    aifetch+memory+sqlite     >= 0.9x the req/s of aifetch without governance
    aifetch+redis+postgresql  >= 0.75x, and sequential p50 added <= +0.35 ms over it

    .venv/bin/python bench/bench_governance_gateway.py [--quick] [--rounds N]
        [--redis redis://127.0.0.1:6379/0] [--postgres postgresql://postgres@127.0.0.1:5432/test]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from bench_gateway import (
    BENCH,
    CALLER_KEY,
    LOAD_CORE,
    PROXY_CORE,
    PYTHON,
    QUICK,
    ROOT,
    UPSTREAM_KEY,
    Plan,
    Proc,
    Result,
    Target,
    best,
    free_port,
    log,
    measure,
    pinned,
    start_target,
    table,
    upstream_server,
    wait_serving,
)

PLAIN = ("direct", "passthrough", "aifetch")
GOVERNED = ("aifetch+memory", "aifetch+memory+sqlite", "aifetch+redis+postgresql")
# The governed targets with a ledger (their rows are checked after the run).
LEDGERED = ("aifetch+memory+sqlite", "aifetch+redis+postgresql")
TARGETS = (*PLAIN, *GOVERNED)
GOVERNED_CONFIG = BENCH / "gateway_bench_governed.yaml"
AIFETCH = str(Path(PYTHON).parent / "aifetch")

# The targets, against the gateway without governance.
MIN_RATIO = {"aifetch+memory+sqlite": 0.9, "aifetch+redis+postgresql": 0.75}
MAX_ADDED_SEQ_P50_MS = {"aifetch+redis+postgresql": 0.35}


# --------------------------------------------------------------------------- the backends


@dataclasses.dataclass
class Backends:
    """Where the governed targets keep their state and ledger, made for this run and
    removed after it."""

    redis: str
    postgres: str
    folder: Path
    prefix: str = dataclasses.field(
        default_factory=lambda: f"aifetch-bench:{secrets.token_hex(4)}:"
    )
    schema: str = dataclasses.field(default_factory=lambda: f"bench_{secrets.token_hex(4)}")

    def env(self, name: str) -> dict[str, str]:
        if name == "aifetch+memory":
            return {"BENCH_STATE": "memory"}
        if name == "aifetch+memory+sqlite":
            return {"BENCH_STATE": "memory", "BENCH_LEDGER": f"sqlite:///{self.folder}/usage.db"}
        return {
            "BENCH_STATE": self.redis,
            "BENCH_LEDGER": f"{self.postgres}?search_path={self.schema}",
            "BENCH_PREFIX": self.prefix,
        }


async def _pg(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _redis_forget(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def _governed_env(backends: Backends, name: str, upstream_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "FAKE_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}/v1",
        "FAKE_UPSTREAM_KEY": UPSTREAM_KEY,
        "BENCH_CALLER_KEY": CALLER_KEY,
        **backends.env(name),
    }


@contextlib.contextmanager
def backends(args: argparse.Namespace) -> Iterator[Backends]:
    with tempfile.TemporaryDirectory(prefix="aifetch-bench-") as folder:
        made = Backends(args.redis, args.postgres, Path(folder))
        asyncio.run(_pg(made.postgres, f"CREATE SCHEMA {made.schema}"))
        try:
            env = _governed_env(made, "aifetch+redis+postgresql", 1)
            done = subprocess.run(
                [AIFETCH, "ledger", "migrate", "--config", str(GOVERNED_CONFIG)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if done.returncode != 0:
                raise RuntimeError(f"aifetch ledger migrate failed: {done.stderr.strip()}")
            yield made
        finally:
            asyncio.run(_pg(made.postgres, f"DROP SCHEMA {made.schema} CASCADE"))
            asyncio.run(_redis_forget(made.redis, made.prefix))


def limits_only(folder: Path) -> Path:
    """The governed config without its ``ledger:`` line, written into ``folder``."""
    lines = GOVERNED_CONFIG.read_text().splitlines(keepends=True)
    config = folder / "limits_only.yaml"
    config.write_text("".join(line for line in lines if not line.startswith("ledger:")))
    return config


def start_governed(name: str, upstream_port: int, made: Backends) -> Target:
    port = free_port()
    config = GOVERNED_CONFIG if name in LEDGERED else limits_only(made.folder)
    argv = [AIFETCH, "serve", "--config", str(config), "--port", str(port)]
    proc = Proc(name, pinned(PROXY_CORE, argv), _governed_env(made, name, upstream_port))
    return Target(name, port, {"Authorization": f"Bearer {CALLER_KEY}"}, "bench-model", proc)


# --------------------------------------------------------------------------- checks


def check_governed(target: Target) -> None:
    """A governed answer carries the limits' headers."""
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", **target.headers}
        conn.request("POST", "/v1/chat/completions", body=target.body(False), headers=headers)
        answer = conn.getresponse()
        answer.read()
    finally:
        conn.close()
    if answer.status != 200 or answer.getheader("x-ratelimit-limit-requests") is None:
        raise RuntimeError(f"{target.name}: no x-ratelimit-* headers (HTTP {answer.status})")


_ROWS = re.compile(r'^aifetch_gateway_ledger_rows_total\{outcome="(\w+)"\} (\S+)$', re.M)


def ledger_rows(target: Target) -> dict[str, float]:
    """The target's ledger rows, written and dropped (its /metrics)."""
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {outcome: float(value) for outcome, value in _ROWS.findall(text)}


def check_ledger(target: Target) -> float:
    """Rows written so far; none may have been dropped."""
    deadline = time.monotonic() + 10
    while True:
        rows = ledger_rows(target)
        if rows.get("dropped", 0) > 0:
            raise RuntimeError(f"{target.name}: the ledger dropped {rows['dropped']:.0f} rows")
        if rows.get("written", 0) > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)  # the writer runs every ledger_interval
    if rows.get("written", 0) <= 0:
        raise RuntimeError(f"{target.name}: no ledger rows written")
    return rows["written"]


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace, plan: Plan) -> tuple[dict[str, list[Result]], dict[str, float]]:
    rounds: dict[str, list[Result]] = {}
    written: dict[str, float] = {}
    with (
        upstream_server() as upstream,
        backends(args) as made,
        tempfile.TemporaryDirectory() as tmp,
        contextlib.ExitStack() as stack,
    ):
        targets: list[Target] = []
        for name in TARGETS:
            if name in GOVERNED:
                target = start_governed(name, upstream[0], made)
            else:
                target = start_target(name, upstream)
            if target.proc is not None:
                stack.callback(target.proc.stop)
            wait_serving(target, 20.0)
            if name in GOVERNED:
                check_governed(target)
            targets.append(target)
        for i in range(args.rounds):
            for target in targets:
                log(f"round {i + 1}/{args.rounds}: {target.name}")
                rounds.setdefault(target.name, []).append(measure(target, plan, Path(tmp)))
        for target in targets:
            if target.name in LEDGERED:
                written[target.name] = check_ledger(target)
    return rounds, written


# --------------------------------------------------------------------------- report


def per_round(rounds: dict[str, list[Result]]) -> list[str]:
    """Each governed target against aifetch without governance, round by round: both ran
    back to back, so the ratio is steadier than either number alone."""
    plain, direct = rounds["aifetch"], rounds["direct"]
    lines = []
    for name in GOVERNED:
        for i, (g, a, d) in enumerate(zip(rounds[name], plain, direct, strict=True), 1):
            cpu = g.cpu_us_per_request / a.cpu_us_per_request if a.cpu_us_per_request else 0.0
            lines.append(
                f"round {i}: {name} / aifetch req/s {g.rps / a.rps:.2f}x, CPU per request "
                f"{cpu:.2f}x ({g.cpu_us_per_request:.0f} vs {a.cpu_us_per_request:.0f} µs); "
                f"sequential p50 added +{g.seq_p50_ms - d.seq_p50_ms:.2f} ms vs "
                f"+{a.seq_p50_ms - d.seq_p50_ms:.2f} ms"
            )
    return lines


def verdicts(by_name: dict[str, Result], c: int) -> list[str]:
    plain = by_name["aifetch"]
    out = []
    for name in GOVERNED:
        r = by_name[name]
        ratio = r.rps / plain.rps
        if name not in MIN_RATIO:  # a step on the way, measured to show what each part costs
            out.append(f"{name} / aifetch req/s at c{c}: {ratio:.2f}x (no target of its own)")
            continue
        ok = "meets" if ratio >= MIN_RATIO[name] else "MISSES"
        out.append(
            f"{name} / aifetch req/s at c{c}: {ratio:.2f}x ({ok} the >= {MIN_RATIO[name]}x target)"
        )
        if name in MAX_ADDED_SEQ_P50_MS:
            more = r.seq_p50_ms - plain.seq_p50_ms
            limit = MAX_ADDED_SEQ_P50_MS[name]
            ok = "meets" if more <= limit else "MISSES"
            out.append(
                f"{name} sequential p50 over aifetch: {more:+.2f} ms ({ok} the <= +{limit} ms target)"
            )
    return out


def report(rounds: dict[str, list[Result]], written: dict[str, float], plan: Plan) -> str:
    results = [best(rs) for rs in rounds.values()]
    by_name = {r.target: r for r in results}
    lines = ["", *table(results, plan.concurrency), "",
             "direct row: absolute ms in parentheses; other rows: ms added over direct.",
             "Best of each target's rounds per column."]  # fmt: skip
    lines += [f"{r.target}: wrk reported {r.wrk_errors}" for r in results if r.wrk_errors]
    lines += [
        f"{name}: {rows:,.0f} ledger rows written, none dropped" for name, rows in written.items()
    ]
    lines += ["", *per_round(rounds), *verdicts(by_name, plan.concurrency), f"plan: {plan}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts, one round")
    parser.add_argument("--rounds", type=int, default=None, help="default 3, 1 with --quick")
    parser.add_argument("--concurrency", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--json", type=Path, help="also write every round's numbers here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = dataclasses.replace(QUICK if args.quick else Plan(), concurrency=args.concurrency)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores: proxies on core 1, load and upstream on core 0")
    os.sched_setaffinity(0, {int(LOAD_CORE)})  # the sequential client is load too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rounds, written = run(args, plan)
    print(report(rounds, written, plan))
    if args.json is not None:
        data = {"plan": asdict(plan), "ledger_rows": written,
                "rounds": {name: [asdict(r) for r in rs] for name, rs in rounds.items()}}  # fmt: skip
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
