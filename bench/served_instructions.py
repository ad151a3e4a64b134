"""Instructions per request of `aifetch serve` itself, uvicorn included, under valgrind.

Wall time and CPU time on a shared 2-core machine move by several per cent from run to
run; an instruction count does not. This runs the gateway under valgrind's instruction
counter (``cachegrind --cache-sim=no``) in front of the fake upstream, sends it requests
one at a time over one keep-alive connection (bench_gateway.py's non-stream request),
twice: ``--requests`` and ``--requests + 1000``; the difference of the two totals over
1,000 is the cost of one request served (start-up and shutdown cancel out).

    .venv/bin/python bench/served_instructions.py                      # bench/gateway_bench.yaml
    BENCH_STATE=memory BENCH_LEDGER=sqlite:////tmp/usage.db \\
        .venv/bin/python bench/served_instructions.py --config bench/gateway_bench_governed.yaml

Under valgrind a request takes some milliseconds, so batched work (the ledger's writes,
Redis settlements) comes in smaller batches than at full speed and counts a little more
per request than it costs there. Each run takes ~30 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from bench_gateway import (
    BENCH,
    CALLER_KEY,
    PYTHON,
    ROOT,
    UPSTREAM_KEY,
    RawClient,
    Target,
    free_port,
    upstream_server,
)

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")
START_TIMEOUT = 120.0


def total_instructions(config: str, upstream_port: int, requests: int) -> int:
    """Instructions `aifetch serve` ran in all, from start to exit, for ``requests``."""
    port = free_port()
    env = dict(os.environ, FAKE_UPSTREAM_URL=f"http://127.0.0.1:{upstream_port}/v1",
               FAKE_UPSTREAM_KEY=UPSTREAM_KEY, BENCH_CALLER_KEY=CALLER_KEY)  # fmt: skip
    argv = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
            PYTHON, "-m", "aifetch.gateway._cli", "serve", "--config", config,
            "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        target = Target("aifetch", port, {"Authorization": f"Bearer {CALLER_KEY}"}, "bench-model")
        raw = target.raw_request(stream=False)
        client = _connected(port, raw, proc)
        for _ in range(50 + requests):  # 50 to warm up, in both runs alike
            _, reply = client.request(raw)
            if reply.status != 200:
                raise RuntimeError(f"HTTP {reply.status}: {reply.body[:300]!r}")
        client.close()
        time.sleep(1.0)  # the ledger writer's last batch, at valgrind's pace
        os.killpg(proc.pid, signal.SIGINT)
        out = proc.communicate(timeout=START_TIMEOUT)[0]
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    match = _REFS.search(out)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out[-2000:]}")
    return int(match.group(1).replace(",", ""))


def _connected(port: int, raw: bytes, proc: subprocess.Popen[str]) -> RawClient:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        client = RawClient(port)
        try:
            client.request(raw)
            return client
        except OSError:
            client.close()
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start under valgrind") from None
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", default=str(BENCH / "gateway_bench.yaml"))
    parser.add_argument("--requests", type=int, default=200, help="the first run's count")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: apt-get install -y valgrind")
    with upstream_server() as (port, _group):
        first = total_instructions(args.config, port, args.requests)
        second = total_instructions(args.config, port, args.requests + 1000)
    print(f"{args.config}: {(second - first) / 1000:,.0f} instructions per request served")


if __name__ == "__main__":
    sys.exit(main())
