"""Load and soak: 1,000 concurrent streams through the gateway for 60 seconds.

Three processes on 127.0.0.1: the fake upstream (``python -m tests.support.fake_upstream``,
``--chunks`` words per answer, ``--chunk-delay`` seconds between events), the gateway
(``aifetch serve`` with a generated config: one caller key, usage accounting and metrics
on, access log off) and this one, the load client (aiohttp), which keeps ``--streams``
streams open: each worker opens a stream, reads it to the end, checks it, and opens the
next, until ``--duration`` seconds have passed after a ``--ramp``.

Every relayed stream must equal, byte for byte (length and BLAKE2b digest), what the
upstream sends for the same request asked directly; half the requests ask for usage
(relayed unchanged), half do not (the gateway strips the usage chunk and the
``"usage":null`` members). See ``tests/proof/_load_support.py`` for the harness.

Figures: errors (target 0), the gateway's peak RSS (target < 300 MB) and memory per open
stream; RSS growth while the load is steady, RSS after a settle, and the peak of a second
round of the same load (no leak: a leak would add to it); the gateway's CPU time per relayed chunk (/proc utime + stime), throughput, and the gateway's
sockets before and after (caller side must return to 0). The soft RLIMIT_NOFILE is raised
to 8,192 here (children inherit it): 1,000 streams need ~1,000 fds in the client and the
upstream and ~2,000 in the gateway. Exits 1 when a target is missed.

    .venv/bin/python bench/load_gateway.py [--streams 1000] [--duration 60]
        [--chunks 50] [--chunk-delay 0.05] [--settle 35] [--rounds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.proof._load_support import (
    RunReport,
    measured_run,
    raise_fd_limit,
    services,
    summary,
)

MB = 1024 * 1024
RSS_LIMIT = 300 * MB
# Steady-load growth allowed: a leak of 1 KB per stream served would exceed it in the
# default run (~15,000 streams in the steady window).
STEADY_GROWTH_LIMIT = 8 * MB
# A second round of the same load may add at most this to the first round's peak.
REPEAT_GROWTH_LIMIT = 8 * MB
FD_LIMIT = 8192


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds the load is held")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds to open all streams")
    parser.add_argument("--chunks", type=int, default=50, help="content chunks per answer")
    parser.add_argument("--chunk-delay", type=float, default=0.05, help="seconds between events")
    parser.add_argument(
        "--settle",
        type=float,
        default=35.0,
        help="seconds after the load before RSS and sockets are read again: past twice the "
        "upstream pool's 15 s keep-alive (aiohttp closes idle connections on a timer of that "
        "period), so idle upstream connections have closed",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="the whole load again on the same gateway: a leak adds to the peak each round",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--proxy",
        choices=["aifetch", "passthrough"],
        default="aifetch",
        help="what stands between the load and the upstream: the gateway, or the bare "
        "passthrough (bench/passthrough.py) for its memory and CPU side by side",
    )
    return parser.parse_args(argv)


def missed_targets(report: RunReport) -> list[str]:
    load = report.load
    missed = []
    if load.error_count:
        missed.append(f"{load.error_count} errors: {load.first_errors}")
    if load.min_open_held < report.streams:
        missed.append(f"only {load.min_open_held} streams open at the lowest point")
    if report.statuses and set(report.statuses) != {"200"}:
        missed.append(f"the gateway counted non-200 answers: {report.statuses}")
    if report.rss_peak >= RSS_LIMIT:
        missed.append(f"peak RSS {report.rss_peak / MB:.0f} MB (limit {RSS_LIMIT / MB:.0f})")
    growth = report.rss_steady[1] - report.rss_steady[0]
    if growth > STEADY_GROWTH_LIMIT:
        missed.append(f"RSS grew {growth / MB:.1f} MB while the load was steady")
    if report.rss_after > report.rss_peak:
        missed.append("RSS kept growing after the load ended")
    if report.tcp_after.caller_side:
        missed.append(f"{report.tcp_after.caller_side} caller connections left open")
    if report.tcp_after.upstream_side > report.tcp_before.upstream_side:
        missed.append(f"{report.tcp_after.upstream_side} upstream connections left open")
    return missed


def missed_between(first: RunReport, later: RunReport) -> list[str]:
    """The same load again must reuse the memory the first one left, not add to it."""
    grown = later.rss_peak - first.rss_peak
    if grown > REPEAT_GROWTH_LIMIT:
        return [f"a repeated load raised the peak RSS by {grown / MB:.1f} MB"]
    return []


def table(reports: list[RunReport]) -> str:
    columns = [summary(r) for r in reports]
    names = [name for name, _ in columns[0]]
    width = max(map(len, names))
    head = " | ".join(f"round {i + 1}" for i in range(len(reports)))
    lines = [f"| {'figure':<{width}} | {head} |", f"|{'-' * (width + 2)}|" + "---|" * len(reports)]
    for row, name in enumerate(names):
        values = " | ".join(column[row][1] for column in columns)
        lines.append(f"| {name:<{width}} | {values} |")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    fd_limit = raise_fd_limit(FD_LIMIT)
    reports: list[RunReport] = []
    with (
        tempfile.TemporaryDirectory(prefix="aifetch-load-") as scratch,
        services(
            Path(scratch),
            chunks=args.chunks,
            chunk_delay=args.chunk_delay,
            max_connections=args.streams + 100,
            proxy=args.proxy,
        ) as svc,
    ):
        print(
            f"gateway {svc.gateway_url} (pid {svc.gateway.pid}), upstream "
            f"{svc.upstream_url} (pid {svc.upstream.pid}), fd limit {fd_limit}",
            flush=True,
        )
        for _ in range(args.rounds):
            report = await measured_run(
                svc,
                streams=args.streams,
                duration=args.duration,
                ramp=args.ramp,
                settle=args.settle,
            )
            reports.append(report)
            print(f"round {len(reports)}: {report.load.streams} streams", flush=True)
    print("\n" + table(reports))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in reports], indent=2, default=str))
    missed = [line for r in reports for line in missed_targets(r)]
    missed += [line for r in reports[1:] for line in missed_between(reports[0], r)]
    for line in missed:
        print(f"MISSED: {line}")
    print("all targets met" if not missed else f"{len(missed)} target(s) missed")
    return 1 if missed else 0


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C, so the children are still stopped by their PIDs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
