"""CPU per chunk of translated streams through the gateway, beside the byte-exact relay.

One ``aifetch serve`` (``bench/dialects_bench.yaml``, auth, usage and metrics on) pinned to
core 1, in front of two fake upstreams on core 0 with the client: the OpenAI-compatible
one (``tests/support/fake_upstream.py --chunks``) and a fake Anthropic and Gemini API
(``bench/fake_providers.py``). Every stream is ``--chunks`` content chunks (200), written
by the upstream at once. Paths, all through the same gateway process:

    relay      POST /v1/chat/completions → openai upstream: the byte relay (the baseline)
    anthropic  POST /v1/chat/completions → anthropic upstream: Anthropic events → chunks
    gemini     POST /v1/chat/completions → gemini upstream: Gemini events → chunks
    messages   POST /v1/messages → openai upstream: chunks → Anthropic events (dialect out)
    native     POST /v1/messages → anthropic upstream: Anthropic events, byte-exact

For each: streams one after another over one keep-alive connection (a raw-socket client,
``bench_gateway.RawClient``), every answer checked whole (its completing event, and the
chunk count); the gateway's own CPU (user + system of its process group, from /proc:
steady when other work takes its core) over those streams, per chunk. Paths take turns in
each of ``--rounds`` rounds and the best round of each counts. The target (issue 12): a
translated stream costs at most 2x the relay's CPU per chunk.

    .venv/bin/python bench/bench_dialects.py [--quick] [--rounds 3] [--streams 2000]
        [--chunks 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from bench_gateway import (
    BENCH,
    LOAD_CORE,
    PROXY_CORE,
    PYTHON,
    Proc,
    RawClient,
    free_port,
    group_cpu,
    log,
    pinned,
)

UPSTREAM_KEY = "sk-bench-upstream"
CALLER_KEY = "sk-bench-caller"
MAX_RATIO = 2.0  # issue 12: a translated stream at most 2x the relay's CPU per chunk
STREAM_TIMEOUT = 15.0


@dataclass(frozen=True)
class Case:
    name: str
    route: str
    model: str
    end: bytes  # the completing event, checked in every answer
    chunk: bytes  # what each content chunk carries once, counted in every answer
    what: str


PATHS = [
    Case("relay", "/v1/chat/completions", "relay", b"data: [DONE]", b'"content":"',
          "openai upstream, bytes relayed"),
    Case("anthropic", "/v1/chat/completions", "claude", b"data: [DONE]", b'"content":"',
          "anthropic upstream, translated to chunks"),
    Case("gemini", "/v1/chat/completions", "gemini", b"data: [DONE]", b'"content":"',
          "gemini upstream, translated to chunks"),
    Case("messages", "/v1/messages", "relay", b"event: message_stop", b'"text_delta"',
          "/v1/messages, openai upstream, chunks translated to Anthropic events"),
    Case("native", "/v1/messages", "claude", b"event: message_stop", b'"text_delta"',
          "/v1/messages, anthropic upstream, bytes relayed"),
]  # fmt: skip


def raw_request(port: int, path: Case) -> bytes:
    payload: dict[str, object] = {
        "model": path.model,
        "stream": True,
        "messages": [{"role": "user", "content": "Say hello"}],
    }
    if path.route == "/v1/messages":
        payload["max_tokens"] = 1024
    body = json.dumps(payload, separators=(",", ":")).encode()
    head = [
        f"POST {path.route} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Authorization: Bearer {CALLER_KEY}",
        "anthropic-version: 2023-06-01",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Result:
    path: str
    cpu_us_per_chunk: float = 0.0
    cpu_us_per_stream: float = 0.0
    ms_per_stream: float = 0.0


def measure(port: int, pgid: int, path: Case, streams: int, warmup: int, chunks: int) -> Result:
    raw = raw_request(port, path)
    client = RawClient(port)
    try:
        for _ in range(warmup):
            _check(path, client.request(raw)[1].body, chunks)
        cpu = group_cpu(pgid)
        started = time.perf_counter()
        for _ in range(streams):
            _check(path, client.request(raw)[1].body, chunks)
        wall = time.perf_counter() - started
        cpu = group_cpu(pgid) - cpu
    finally:
        client.close()
    return Result(path.name, cpu / (streams * chunks) * 1e6, cpu / streams * 1e6,
                  wall / streams * 1e3)  # fmt: skip


def _check(path: Case, body: bytes, chunks: int) -> None:
    """A fast wrong answer is no answer: complete, and every chunk there."""
    if path.end not in body or body.count(path.chunk) < chunks:
        raise RuntimeError(f"{path.name}: a bad stream ({body.count(path.chunk)} chunks): "
                           f"{body[:300]!r} ... {body[-300:]!r}")  # fmt: skip


@contextlib.contextmanager
def servers(chunks: int) -> Iterator[tuple[int, int]]:
    """The fakes and the gateway: the gateway's port and process group."""
    with contextlib.ExitStack() as stack:
        argv = [PYTHON, "-m", "tests.support.fake_upstream", "--port", "0",
                "--chunks", str(chunks)]  # fmt: skip
        openai = Proc("fake openai", pinned(LOAD_CORE, argv))
        stack.callback(openai.stop)
        argv = [PYTHON, str(BENCH / "fake_providers.py"), "--port", "0", "--chunks", str(chunks)]
        providers = Proc("fake providers", pinned(LOAD_CORE, argv))
        stack.callback(providers.stop)
        openai_url = openai.wait_ready_line(15.0)
        providers_url = providers.wait_ready_line(15.0)
        port = free_port()
        env = dict(os.environ, FAKE_OPENAI_URL=openai_url + "/v1",
                   FAKE_PROVIDERS_URL=providers_url, FAKE_UPSTREAM_KEY=UPSTREAM_KEY,
                   BENCH_CALLER_KEY=CALLER_KEY)  # fmt: skip
        argv = [PYTHON, "-m", "aifetch.gateway._cli", "serve", "--config",
                str(BENCH / "dialects_bench.yaml"), "--port", str(port)]  # fmt: skip
        gateway = Proc("aifetch", pinned(PROXY_CORE, argv), env)
        stack.callback(gateway.stop)
        _wait_serving(port, gateway)
        yield port, gateway.popen.pid


def _wait_serving(port: int, gateway: Proc) -> None:
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        if not gateway.alive():
            raise RuntimeError(f"the gateway exited{gateway.tail()}")
        client = RawClient(port)
        try:
            if client.request(raw_request(port, PATHS[0]))[1].status == 200:
                return
        except OSError:
            time.sleep(0.2)
        finally:
            client.close()
    raise RuntimeError(f"the gateway did not serve within 20 s{gateway.tail()}")


def report(rounds: dict[str, list[Result]], args: argparse.Namespace) -> str:
    best = {name: min(rs, key=lambda r: r.cpu_us_per_chunk) for name, rs in rounds.items()}
    relay = best["relay"].cpu_us_per_chunk
    lines = ["", "| path | CPU µs/chunk | × relay | CPU µs/stream | ms/stream | what |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for path in PATHS:
        r = best[path.name]
        ratio = r.cpu_us_per_chunk / relay if relay else 0.0
        lines.append(f"| {path.name} | {r.cpu_us_per_chunk:.2f} | {ratio:.2f}x | "
                     f"{r.cpu_us_per_stream:.0f} | {r.ms_per_stream:.2f} | {path.what} |")  # fmt: skip
    lines += ["", f"{args.chunks}-chunk streams, {args.streams} per path and round, best of "
              f"{args.rounds} round(s); the gateway's own CPU, from /proc.", ""]  # fmt: skip
    for i in range(args.rounds):
        cells = [f"{name} {rs[i].cpu_us_per_chunk / rounds['relay'][i].cpu_us_per_chunk:.2f}x"
                 for name, rs in rounds.items() if name != "relay"]  # fmt: skip
        lines.append(f"round {i + 1}, CPU per chunk against the relay: " + ", ".join(cells))
    for name in ("anthropic", "gemini", "messages"):
        ratio = best[name].cpu_us_per_chunk / relay if relay else 0.0
        ok = "meets" if ratio <= MAX_RATIO else "MISSES"
        lines.append(f"{name}: {ratio:.2f}x the relay's CPU per chunk ({ok} the <= "
                     f"{MAX_RATIO}x target)")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="~20 s: 300 streams a path, 1 round")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    parser.add_argument("--streams", type=int, default=None,
                        help="streams per path and round (default 2000, 300 with --quick)")  # fmt: skip
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write every round's numbers here")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.streams = args.streams or (300 if args.quick else 2000)
    warmup = 10 if args.quick else 50
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        raise SystemExit("needs 2 cores and taskset: the gateway on core 1, the rest on core 0")
    os.sched_setaffinity(0, {int(LOAD_CORE)})  # the client is load too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # finally blocks stop every child
    rounds: dict[str, list[Result]] = {path.name: [] for path in PATHS}
    with servers(args.chunks) as (port, pgid):
        for i in range(args.rounds):
            for path in PATHS:
                log(f"round {i + 1}/{args.rounds}: {path.name}")
                rounds[path.name].append(
                    measure(port, pgid, path, args.streams, warmup, args.chunks)
                )
    print(report(rounds, args))
    if args.json is not None:
        data = {name: [asdict(r) for r in rs] for name, rs in rounds.items()}
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
