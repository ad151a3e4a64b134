"""Side-by-side overhead of OpenAI-compatible proxies over one fake upstream.

Targets, each in front of the same fake upstream (``tests/support/fake_upstream.py``):

    direct       the fake upstream itself: the baseline every "added" number is over
    passthrough  bench/passthrough.py: raw ASGI + aiohttp, nothing else (the floor)
    aifetch      `aifetch serve --config bench/gateway_bench.yaml` (auth, usage, metrics on)
    aifetch-lean the same, its streaming calls on the lean transport (AIFETCH_STREAM_TRANSPORT=lean)
    litellm      LiteLLM proxy (bench/.venv-litellm, from bench/setup_competitors.sh)
    portkey      Portkey's gateway (bench/portkey/node_modules, same script)

Per target:
    * req/s of non-stream ``POST /v1/chat/completions`` at concurrency 32 (wrk, one
      thread, a Lua script for the POST body), p50/p99 latency at that load, and the
      target's own CPU time per request over that run (from /proc: steady even when
      other work on the machine takes the target's core);
    * sequential latency p50/p99 over one keep-alive connection (a blocking raw-socket
      client in this process, so client cost is small and the same for every target);
    * 200-chunk streams, sequentially: time to the first ``data:`` byte and to the end;
    * 200-chunk streams at concurrency 32 (wrk): streams/s and the target's own CPU per
      stream (the relay's cost; a stream is 200 upstream events relayed).
With ``--before DIR`` a second aifetch, ``aifetch-before``, runs the source tree in DIR (an
older checkout: ``git worktree add DIR <commit>``) beside the current one, so a change is
measured against what it replaced in the same run.
Every answer is checked for shape first, and the aifetch gateway's /metrics must show
the completion tokens it counted meanwhile.

Each proxy runs pinned to core 1 (``taskset -c 1``); wrk, this script and the fake
upstream share core 0. direct, passthrough and aifetch stay up and are measured in
turn for ``--rounds`` rounds (best round per number is reported, plus the per-round
aifetch/passthrough ratios); LiteLLM and Portkey are started, measured once and stopped.
Every child is in its own process group, stopped by PID on exit, error, Ctrl-C or SIGTERM.

    .venv/bin/python bench/bench_gateway.py [--quick] [--only aifetch,passthrough]
        [--rounds N] [--concurrency 32] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = sys.executable
ALL_TARGETS = (
    "direct", "passthrough", "aifetch", "aifetch-lean", "aifetch-before", "litellm", "portkey"
)  # fmt: skip
# Measured every round.
CORE_TARGETS = ("direct", "passthrough", "aifetch", "aifetch-lean", "aifetch-before")
UPSTREAM_KEY = "sk-bench-upstream"
CALLER_KEY = "sk-bench-caller"
LITELLM_KEY = "sk-bench-litellm"
LOAD_CORE, PROXY_CORE = "0", "1"
BEFORE = ROOT / "before-not-given"  # --before
CHUNKS = 200
START_TIMEOUT = {"litellm": 90.0, "portkey": 30.0}
STOP_TIMEOUT = 5.0
IO_TIMEOUT = 10.0  # per socket operation: a hung proxy fails the run instead of stalling it

# Targets from the issues, for the aifetch gateway.
MIN_RPS_RATIO = 0.8
MAX_ADDED_P50_MS = 0.7
MIN_STREAMS_RATIO = 0.9
MAX_STREAM_CPU_RATIO = 1.2
# The lean transport becomes the default for streams only at this many times the
# passthrough's streams/s (and as much less CPU per stream).
ADOPT_LEAN_RATIO = 1.5


@dataclass(frozen=True)
class Plan:
    """How much to measure; ``--quick`` shrinks every count and duration."""

    seq_warmup: int = 300
    seq_requests: int = 2000
    wrk_warmup_s: int = 3
    wrk_seconds: int = 10
    concurrency: int = 32
    stream_warmup: int = 10
    stream_requests: int = 200


QUICK = Plan(seq_warmup=100, seq_requests=300, wrk_warmup_s=1, wrk_seconds=3,
             stream_warmup=3, stream_requests=30)  # fmt: skip


# --------------------------------------------------------------------------- processes


class Proc:
    """A child in its own session so the whole group (workers, npm shims) can be stopped."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log,
            start_new_session=True,
        )
        # Drain stdout on a thread so a chatty child never blocks on a full pipe.
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._pumper = threading.Thread(target=self._pump, daemon=True)
        self._pumper.start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            line = raw.decode(errors="replace").rstrip()
            if len(self.lines) < 200:
                self.lines.append(line)
            if line.startswith("READY "):
                self._ready.set()

    def wait_ready_line(self, timeout: float) -> str:
        """The URL the child printed as ``READY <url>``."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1) and time.monotonic() < deadline and self.alive():
            pass
        if not self._ready.is_set():
            why = f"did not print READY within {timeout}s" if self.alive() else "exited"
            raise RuntimeError(f"{self.name} {why}{self.tail()}")
        return next(x for x in self.lines if x.startswith("READY ")).split(" ", 1)[1]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self) -> str:
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").strip().splitlines()[-15:]
        return ("\n  " + "\n  ".join(text)) if text else ""

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after a grace period."""
        pgid = self.popen.pid  # start_new_session: the child leads its own group
        for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            try:
                self.popen.wait(wait)
                # The leader is gone; SIGKILL any straggler left in its group.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                break
            except subprocess.TimeoutExpired:
                continue
        # The group is gone, so the pipe is at EOF and the reader thread ends.
        self._pumper.join(STOP_TIMEOUT)
        if self.popen.stdout is not None and not self._pumper.is_alive():
            self.popen.stdout.close()
        self.log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(core: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv]


# --------------------------------------------------------------------------- raw HTTP/1.1 client


@dataclass
class Reply:
    status: int
    body: bytes
    first_data: float  # perf_counter when b"data:" arrived (non-stream: when the head was read)
    done: float


class RawClient:
    """Blocking HTTP/1.1 over one keep-alive socket: a few microseconds of client cost.

    Understands exactly what the targets send back: ``Content-Length`` or chunked
    bodies (RFC 9112 §6.3, §7.1).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _connect(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buf.clear()
        return self.sock

    def _fill(self, sock: socket.socket) -> None:
        data = sock.recv(262144)
        if not data:
            raise ConnectionError("connection closed mid-response")
        self.buf += data

    def request(self, raw: bytes) -> tuple[float, Reply]:
        sock = self._connect()
        started = time.perf_counter()
        try:
            sock.sendall(raw)
            return started, self._read(sock)
        except BaseException:
            self.close()
            raise

    def _read(self, sock: socket.socket) -> Reply:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill(sock)
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        status = int(head[0].split(" ", 2)[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        if "chunked" in fields.get("transfer-encoding", ""):
            body, first = self._chunked(sock)
        else:
            body, first = self._sized(sock, int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            self.close()
        return Reply(status, body, first, time.perf_counter())

    def _sized(self, sock: socket.socket, n: int) -> tuple[bytes, float]:
        first = time.perf_counter()
        while len(self.buf) < n:
            self._fill(sock)
        body = bytes(self.buf[:n])
        del self.buf[:n]
        return body, first

    def _chunked(self, sock: socket.socket) -> tuple[bytes, float]:
        body = bytearray()
        first = 0.0
        while True:
            while (eol := self.buf.find(b"\r\n")) < 0:
                self._fill(sock)
            size = int(bytes(self.buf[:eol]).split(b";")[0], 16)
            while len(self.buf) < eol + 2 + size + 2:
                self._fill(sock)
            body += self.buf[eol + 2 : eol + 2 + size]
            del self.buf[: eol + 2 + size + 2]
            if not first and b"data:" in body:
                first = time.perf_counter()
            if size == 0:
                # Chunked bodies end "0\r\n\r\n" when there are no trailers.
                return bytes(body), first or time.perf_counter()


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    port: int
    headers: dict[str, str]
    model: str
    proc: Proc | None = None
    # Process group whose CPU time is charged to this target (its own, or the upstream's
    # for the direct baseline).
    cpu_group: int | None = None

    def __post_init__(self) -> None:
        if self.cpu_group is None and self.proc is not None:
            self.cpu_group = self.proc.popen.pid

    def body(self, stream: bool) -> bytes:
        msg = {"model": self.model, "messages": [{"role": "user", "content": "Say hello"}]}
        return json.dumps({**msg, "stream": stream}, separators=(",", ":")).encode()

    def raw_request(self, stream: bool) -> bytes:
        body = self.body(stream)
        lines = [
            "POST /v1/chat/completions HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            "Content-Type: application/json",
            *(f"{k}: {v}" for k, v in self.headers.items()),
            f"Content-Length: {len(body)}",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def start_target(name: str, fake: tuple[int, int]) -> Target:
    """Start ``name`` in front of the fake upstream at ``fake`` (port, process group)."""
    upstream_port, upstream_group = fake
    port = free_port()
    env = dict(os.environ)
    upstream = f"http://127.0.0.1:{upstream_port}"
    auth = {"Authorization": f"Bearer {UPSTREAM_KEY}"}
    if name == "direct":
        return Target(name, upstream_port, auth, "gpt-4o-mini", cpu_group=upstream_group)
    if name == "passthrough":
        argv = [PYTHON, str(BENCH / "passthrough.py"), "--upstream", upstream, "--port", str(port)]
        return Target(name, port, auth, "gpt-4o-mini", Proc(name, pinned(PROXY_CORE, argv)))
    if name in ("aifetch", "aifetch-lean", "aifetch-before"):
        env |= {"FAKE_UPSTREAM_URL": upstream + "/v1", "FAKE_UPSTREAM_KEY": UPSTREAM_KEY,
                "BENCH_CALLER_KEY": CALLER_KEY}  # fmt: skip
        # Streams on the lean transport; anything else as aifetch (the default: aiohttp).
        env["AIFETCH_STREAM_TRANSPORT"] = "lean" if name == "aifetch-lean" else "aiohttp"
        if name == "aifetch-before":
            env["PYTHONPATH"] = str(BEFORE / "src")  # that tree's package, not this one
        argv = [PYTHON, "-m", "aifetch.gateway._cli", "serve",
                "--config", str(BENCH / "gateway_bench.yaml"), "--port", str(port)]  # fmt: skip
        headers = {"Authorization": f"Bearer {CALLER_KEY}"}
        proc = Proc(name, pinned(PROXY_CORE, argv), env)
        return Target(name, port, headers, "bench-model", proc)
    if name == "litellm":
        env |= {"FAKE_UPSTREAM_V1": upstream + "/v1", "FAKE_UPSTREAM_KEY": UPSTREAM_KEY,
                "LITELLM_MASTER_KEY": LITELLM_KEY, "LITELLM_LOG": "ERROR",
                "LITELLM_TELEMETRY": "False"}  # fmt: skip
        argv = [str(BENCH / ".venv-litellm/bin/litellm"), "--config",
                str(BENCH / "litellm_config.yaml"), "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        headers = {"Authorization": f"Bearer {LITELLM_KEY}"}
        proc = Proc(name, pinned(PROXY_CORE, argv), env)
        return Target(name, port, headers, "bench-model", proc)
    if name == "portkey":
        entry = BENCH / "portkey/node_modules/@portkey-ai/gateway/build/start-server.js"
        argv = ["node", str(entry), f"--port={port}", "--headless"]
        headers = {**auth, "x-portkey-provider": "openai",
                   "x-portkey-custom-host": upstream + "/v1"}  # fmt: skip
        proc = Proc(name, pinned(PROXY_CORE, argv), env)
        return Target(name, port, headers, "gpt-4o-mini", proc)
    raise ValueError(f"unknown target {name!r}")


def missing(name: str) -> str | None:
    """Why a target cannot run here, or ``None`` when it can."""
    if name == "litellm" and not (BENCH / ".venv-litellm/bin/litellm").exists():
        return "not installed (run bench/setup_competitors.sh)"
    if name == "portkey":
        if not (BENCH / "portkey/node_modules/@portkey-ai/gateway").exists():
            return "not installed (run bench/setup_competitors.sh)"
        if shutil.which("node") is None:
            return "node not found"
    if name == "aifetch-before" and not (BEFORE / "src" / "aifetch").is_dir():
        return "give --before DIR, a source tree to compare with"
    if name in ("aifetch", "aifetch-lean"):
        probe = [PYTHON, "-c", "import aifetch.gateway; aifetch.gateway.create_app"]
        if subprocess.run(probe, capture_output=True, cwd=ROOT).returncode != 0:
            return "aifetch.gateway.create_app is not importable"
    return None


def wait_serving(target: Target, timeout: float) -> None:
    """Poll until a real chat completion comes back 200 (the only readiness all targets share)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if target.proc is not None and not target.proc.alive():
            raise RuntimeError(f"{target.name} exited during start-up{target.proc.tail()}")
        client = RawClient(target.port)
        try:
            _, reply = client.request(target.raw_request(stream=False))
            if reply.status == 200:
                return
            last = f"HTTP {reply.status}: {reply.body[:300]!r}"
        except OSError as exc:
            last = repr(exc)
        finally:
            client.close()
        time.sleep(0.2)
    tail = target.proc.tail() if target.proc else ""
    raise RuntimeError(f"{target.name} not serving within {timeout}s: {last}{tail}")


def check_replies(target: Target) -> None:
    """Both shapes must be right before timing them: a fast wrong answer is no answer."""
    client = RawClient(target.port)
    try:
        _, reply = client.request(target.raw_request(stream=False))
        if reply.status != 200 or b'"choices"' not in reply.body:
            raise RuntimeError(f"{target.name}: bad completion {reply.status} {reply.body[:300]!r}")
        _, reply = client.request(target.raw_request(stream=True))
        events = reply.body.count(b"data:")
        if reply.status != 200 or b"data: [DONE]" not in reply.body or events < CHUNKS:
            raise RuntimeError(
                f"{target.name}: bad stream {reply.status}, {events} events {reply.body[:300]!r}"
            )
    finally:
        client.close()


# --------------------------------------------------------------------------- measurements


@dataclass
class Result:
    target: str
    rps: float = 0.0
    load_p50_ms: float = 0.0
    load_p99_ms: float = 0.0
    wrk_errors: str = ""
    cpu_us_per_request: float = 0.0  # the target's own CPU over the wrk run
    seq_p50_ms: float = 0.0
    seq_p99_ms: float = 0.0
    stream_ttfb_p50_ms: float = 0.0
    stream_total_p50_ms: float = 0.0
    streams_per_s: float = 0.0  # 200-chunk streams at the wrk concurrency
    stream_load_p50_ms: float = 0.0
    cpu_us_per_stream: float = 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def sequential(target: Target, plan: Plan, result: Result) -> None:
    raw = target.raw_request(stream=False)
    client = RawClient(target.port)
    try:
        for _ in range(plan.seq_warmup):
            client.request(raw)
        times = []
        for _ in range(plan.seq_requests):
            started, reply = client.request(raw)
            if reply.status != 200:
                raise RuntimeError(f"{target.name}: HTTP {reply.status} during the sequential run")
            times.append((reply.done - started) * 1000)
    finally:
        client.close()
    result.seq_p50_ms = percentile(times, 50)
    result.seq_p99_ms = percentile(times, 99)


def streams(target: Target, plan: Plan, result: Result) -> None:
    raw = target.raw_request(stream=True)
    client = RawClient(target.port)
    try:
        for _ in range(plan.stream_warmup):
            client.request(raw)
        firsts, totals = [], []
        for _ in range(plan.stream_requests):
            started, reply = client.request(raw)
            if reply.status != 200 or b"data: [DONE]" not in reply.body:
                raise RuntimeError(f"{target.name}: stream failed with HTTP {reply.status}")
            firsts.append((reply.first_data - started) * 1000)
            totals.append((reply.done - started) * 1000)
    finally:
        client.close()
    result.stream_ttfb_p50_ms = statistics.median(firsts)
    result.stream_total_p50_ms = statistics.median(totals)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str, label: str) -> float:
    match = re.search(rf"^\s*{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk output has no {label!r} line:\n{text}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk_script(target: Target, directory: Path, stream: bool = False) -> Path:
    # A Lua long bracket holds the JSON body verbatim, quotes and all.
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{target.body(stream).decode()}]==]",
             'wrk.headers["Content-Type"] = "application/json"']  # fmt: skip
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers.items()]
    path = directory / f"{target.name}{'-stream' if stream else ''}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(target: Target, script: Path, seconds: int, concurrency: int) -> str:
    argv = pinned(LOAD_CORE, ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency",
                              "--timeout", "5s", "-s", str(script),
                              f"http://127.0.0.1:{target.port}/v1/chat/completions"])  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr.strip()}")
    return done.stdout


def group_cpu(pgid: int | None) -> float:
    """CPU seconds (user + system) used so far by the live processes of group ``pgid``.

    Other work on a shared machine can steal the proxy's core and lower its req/s, but
    not change the CPU it spends per request: that number is the steady one.
    """
    if pgid is None:
        return 0.0
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited meanwhile
        # proc(5): fields after the ")" closing comm; pgrp is field 5, utime/stime 14/15.
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class WrkRun:
    per_s: float  # requests (or streams) per second
    p50_ms: float
    p99_ms: float
    cpu_us: float  # the target's CPU per request (or stream)
    errors: str


def wrk_load(target: Target, plan: Plan, scratch: Path, stream: bool) -> WrkRun:
    """A warm-up, then ``plan.wrk_seconds`` of wrk at ``plan.concurrency``, with the
    target's CPU over the run. For a stream wrk reads each chunked answer to its end
    before it sends the next request on the connection."""
    script = wrk_script(target, scratch, stream)
    run_wrk(target, script, plan.wrk_warmup_s, plan.concurrency)
    cpu = group_cpu(target.cpu_group)
    out = run_wrk(target, script, plan.wrk_seconds, plan.concurrency)
    cpu = group_cpu(target.cpu_group) - cpu
    done = re.search(r"(\d+) requests in", out)
    count = int(done.group(1)) if done is not None else 0
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"wrk output has no Requests/sec:\n{out}")
    errors = [ln.strip() for ln in out.splitlines() if "Non-2xx" in ln or "Socket errors" in ln]
    return WrkRun(
        float(match.group(1)),
        _wrk_ms(out, "50%"),
        _wrk_ms(out, "99%"),
        cpu / count * 1e6 if count else 0.0,
        "; ".join(errors),
    )


def concurrent(target: Target, plan: Plan, result: Result, scratch: Path) -> None:
    run = wrk_load(target, plan, scratch, stream=False)
    result.rps, result.cpu_us_per_request = run.per_s, run.cpu_us
    result.load_p50_ms, result.load_p99_ms = run.p50_ms, run.p99_ms
    result.wrk_errors = run.errors


def concurrent_streams(target: Target, plan: Plan, result: Result, scratch: Path) -> None:
    """Streams/s at the wrk concurrency and the target's CPU per stream."""
    run = wrk_load(target, plan, scratch, stream=True)
    result.streams_per_s, result.cpu_us_per_stream = run.per_s, run.cpu_us
    result.stream_load_p50_ms = run.p50_ms
    if run.errors:
        result.wrk_errors = "; ".join(filter(None, [result.wrk_errors, "streams: " + run.errors]))


def measure(target: Target, plan: Plan, scratch: Path) -> Result:
    result = Result(target.name)
    check_replies(target)
    sequential(target, plan, result)
    concurrent(target, plan, result, scratch)
    streams(target, plan, result)
    concurrent_streams(target, plan, result, scratch)
    if target.name.startswith("aifetch"):
        check_accounting(target)
    return result


_TOKENS = re.compile(
    rb'^aifetch_gateway_tokens_total\{[^}]*kind="completion"[^}]*\} ([0-9.e+]+)$', re.M
)


def check_accounting(target: Target) -> None:
    """The gateway's numbers count only if it really did its bookkeeping meanwhile."""
    lines = ["GET /metrics HTTP/1.1", f"Host: 127.0.0.1:{target.port}",
             *(f"{k}: {v}" for k, v in target.headers.items())]  # fmt: skip
    client = RawClient(target.port)
    try:
        _, reply = client.request(("\r\n".join(lines) + "\r\n\r\n").encode())
    finally:
        client.close()
    counted = sum(float(m) for m in _TOKENS.findall(reply.body))
    if reply.status != 200 or counted <= 0:
        raise RuntimeError(f"aifetch: no completion tokens in /metrics (HTTP {reply.status})")


# --------------------------------------------------------------------------- report

_LATENCIES = ("seq_p50_ms", "seq_p99_ms", "load_p50_ms", "load_p99_ms",
              "stream_ttfb_p50_ms", "stream_total_p50_ms")  # fmt: skip


def best(rounds: list[Result]) -> Result:
    """Each number's best round: other work on a shared machine only ever adds time."""
    out = Result(rounds[0].target, rps=max(r.rps for r in rounds))
    for name in _LATENCIES:
        setattr(out, name, min(getattr(r, name) for r in rounds))
    out.cpu_us_per_request = min(r.cpu_us_per_request for r in rounds)
    out.streams_per_s = max(r.streams_per_s for r in rounds)
    out.stream_load_p50_ms = min(r.stream_load_p50_ms for r in rounds)
    out.cpu_us_per_stream = min(r.cpu_us_per_stream for r in rounds)
    out.wrk_errors = "; ".join(r.wrk_errors for r in rounds if r.wrk_errors)
    return out


def table(results: list[Result], c: int) -> list[str]:
    base = results[0]  # direct
    head = (f"| target | req/s c{c} | added p50 seq ms | added p99 seq ms | added p50 c{c} ms "
            f"| added p99 c{c} ms | stream TTFB p50 ms | stream total p50 ms | CPU µs/req |")  # fmt: skip
    rows = [head, "|" + "---|" * 9]
    for r in results:
        if r is base:
            cells = [f"({getattr(r, n):.2f})" for n in _LATENCIES[:4]]
        else:
            cells = [f"+{getattr(r, n) - getattr(base, n):.2f}" for n in _LATENCIES[:4]]
        cells = [
            f"{r.rps:,.0f}",
            *cells,
            f"{r.stream_ttfb_p50_ms:.2f}",
            f"{r.stream_total_p50_ms:.2f}",
            f"{r.cpu_us_per_request:.0f}",
        ]
        rows.append(f"| {r.target} | " + " | ".join(cells) + " |")
    rows += ["", f"| target | streams/s c{c} | stream p50 c{c} ms | CPU µs/stream |",
             "|---|---|---|---|"]  # fmt: skip
    for r in results:
        rows.append(f"| {r.target} | {r.streams_per_s:,.0f} | {r.stream_load_p50_ms:.2f} | "
                    f"{r.cpu_us_per_stream:.0f} |")  # fmt: skip
    return rows


def per_round(rounds: dict[str, list[Result]]) -> list[str]:
    """aifetch against the passthrough round by round: both ran back to back, so the
    ratio is steadier than either number alone."""
    bare, base = rounds.get("passthrough", []), rounds["direct"]
    lines = []
    for name in ("aifetch", "aifetch-lean", "aifetch-before"):
        for i, (g, b, d) in enumerate(zip(rounds.get(name, []), bare, base, strict=False), 1):
            cpu = _ratio(g.cpu_us_per_request, b.cpu_us_per_request)
            lines.append(f"round {i}: {name}/passthrough req/s {_ratio(g.rps, b.rps):.2f}x, "
                         f"CPU per request {cpu:.2f}x; streams/s "
                         f"{_ratio(g.streams_per_s, b.streams_per_s):.2f}x, CPU per stream "
                         f"{_ratio(g.cpu_us_per_stream, b.cpu_us_per_stream):.2f}x; added seq "
                         f"p50 {name} +{g.seq_p50_ms - d.seq_p50_ms:.2f} ms, "
                         f"passthrough +{b.seq_p50_ms - d.seq_p50_ms:.2f} ms")  # fmt: skip
    now, before = rounds.get("aifetch", []), rounds.get("aifetch-before", [])
    for i, (n, o) in enumerate(zip(now, before, strict=False), 1):
        lines.append(f"round {i}: aifetch/aifetch-before req/s {_ratio(n.rps, o.rps):.3f}x, "
                     f"added seq p50 {n.seq_p50_ms - o.seq_p50_ms:+.3f} ms, streams/s "
                     f"{_ratio(n.streams_per_s, o.streams_per_s):.3f}x, CPU per stream "
                     f"{_ratio(n.cpu_us_per_stream, o.cpu_us_per_stream):.3f}x")  # fmt: skip
    return lines


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def verdict(by_name: dict[str, Result], c: int) -> list[str]:
    gw, bare, base = by_name.get("aifetch"), by_name.get("passthrough"), by_name["direct"]
    if gw is None:
        return []
    added = gw.seq_p50_ms - base.seq_p50_ms
    ok = "meets" if added <= MAX_ADDED_P50_MS else "MISSES"
    out = [
        f"aifetch added sequential p50: {added:.2f} ms ({ok} the <= {MAX_ADDED_P50_MS} ms target)"
    ]
    if bare is not None and bare.rps:
        ratio = gw.rps / bare.rps
        ok = "meets" if ratio >= MIN_RPS_RATIO else "MISSES"
        out.append(
            f"aifetch / passthrough req/s at c{c}: {ratio:.2f}x ({ok} the >= {MIN_RPS_RATIO}x target)"
        )
    if bare is not None and bare.streams_per_s and bare.cpu_us_per_stream:
        ratio = gw.streams_per_s / bare.streams_per_s
        ok = "meets" if ratio >= MIN_STREAMS_RATIO else "MISSES"
        out.append(f"aifetch / passthrough streams/s at c{c}: {ratio:.2f}x "
                   f"({ok} the >= {MIN_STREAMS_RATIO}x target)")  # fmt: skip
        cpu = gw.cpu_us_per_stream / bare.cpu_us_per_stream
        ok = "meets" if cpu <= MAX_STREAM_CPU_RATIO else "MISSES"
        out.append(f"aifetch / passthrough CPU per stream: {cpu:.2f}x "
                   f"({ok} the <= {MAX_STREAM_CPU_RATIO}x target)")  # fmt: skip
    out += _lean_verdict(by_name, c)
    for other in ("litellm", "portkey"):
        if (r := by_name.get(other)) is not None and r.rps:
            out.append(f"aifetch / {other} req/s at c{c}: {gw.rps / r.rps:.1f}x")
    return out


def _lean_verdict(by_name: dict[str, Result], c: int) -> list[str]:
    """The lean transport against the issue's bar for making it the default."""
    lean, bare, gw = by_name.get("aifetch-lean"), by_name.get("passthrough"), by_name.get("aifetch")
    if lean is None or bare is None or not bare.streams_per_s or not lean.cpu_us_per_stream:
        return []
    rate = lean.streams_per_s / bare.streams_per_s
    cpu = bare.cpu_us_per_stream / lean.cpu_us_per_stream
    adopt = "meets" if min(rate, cpu) >= ADOPT_LEAN_RATIO else "MISSES"
    out = [f"aifetch-lean / passthrough streams/s at c{c}: {rate:.2f}x, per stream "
           f"{cpu:.2f}x less CPU ({adopt} the >= {ADOPT_LEAN_RATIO}x bar to be the default)"]  # fmt: skip
    if gw is not None and gw.streams_per_s and lean.cpu_us_per_stream:
        out.append(f"aifetch-lean / aifetch streams/s at c{c}: "
                   f"{lean.streams_per_s / gw.streams_per_s:.2f}x, CPU per stream "
                   f"{lean.cpu_us_per_stream / gw.cpu_us_per_stream:.2f}x")  # fmt: skip
    return out


def report(rounds: dict[str, list[Result]], failures: dict[str, str], plan: Plan) -> str:
    results = [best(rs) for rs in rounds.values()]
    by_name = {r.target: r for r in results}
    lines = ["", *table(results, plan.concurrency), "",
             "direct row: absolute ms in parentheses; other rows: ms added over direct.",
             "Best of each target's rounds per column; competitors ran one round."]  # fmt: skip
    lines += [f"{r.target}: wrk reported {r.wrk_errors}" for r in results if r.wrk_errors]
    lines += [f"{name}: not measured: {why}" for name, why in failures.items()]
    lines += ["", *per_round(rounds), *verdict(by_name, plan.concurrency), f"plan: {plan}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def upstream_server() -> Iterator[tuple[int, int]]:
    """The fake upstream's port and process group."""
    argv = [PYTHON, "-m", "tests.support.fake_upstream", "--port", "0", "--chunks", str(CHUNKS)]
    proc = Proc("fake upstream", pinned(LOAD_CORE, argv))
    try:
        url = proc.wait_ready_line(15.0)
        yield int(url.rsplit(":", 1)[1]), proc.popen.pid
    finally:
        proc.stop()


def started(name: str, upstream: tuple[int, int], stack: contextlib.ExitStack) -> Target:
    """Start a target (stopped when ``stack`` closes) and wait until it answers."""
    wait = START_TIMEOUT.get(name, 20.0)
    target = start_target(name, upstream)
    if target.proc is not None:
        stack.callback(target.proc.stop)
    wait_serving(target, wait)
    return target


def run(
    names: list[str], args: argparse.Namespace, plan: Plan
) -> tuple[dict[str, list[Result]], dict[str, str]]:
    """Core targets stay up and are measured round-robin ``--rounds`` times, so a burst of
    other load on the machine hits one round of each rather than all of one target;
    competitors are started, measured once and stopped one at a time."""
    rounds: dict[str, list[Result]] = {}
    failures: dict[str, str] = {}
    core = [n for n in names if n in CORE_TARGETS]
    with (
        upstream_server() as upstream,
        tempfile.TemporaryDirectory() as tmp,
        contextlib.ExitStack() as stack,
    ):
        targets: dict[str, Target] = {}
        for name in core:
            try:
                targets[name] = started(name, upstream, stack)
            except (RuntimeError, OSError) as exc:
                if name == "direct":
                    raise
                failures[name] = str(exc)
        for i in range(args.rounds):
            for name, target in list(targets.items()):
                log(f"round {i + 1}/{args.rounds}: {name}")
                try:
                    rounds.setdefault(name, []).append(measure(target, plan, Path(tmp)))
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                    if name == "direct":
                        raise
                    failures[name] = str(exc)
                    rounds.pop(name, None)
                    del targets[name]
        for name in (n for n in names if n not in CORE_TARGETS):
            log(f"{name}")
            try:
                with contextlib.ExitStack() as own:
                    rounds[name] = [measure(started(name, upstream, own), plan, Path(tmp))]
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                failures[name] = str(exc)
    return rounds, failures


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="< 60 s: small counts, one round, "
                        "skip what is not installed")  # fmt: skip
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(ALL_TARGETS)} "
                        "(direct always runs: it is the baseline)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the core targets "
                        "(default 3, 1 with --quick)")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--json", type=Path, help="also write every round's numbers here")
    parser.add_argument("--before", type=Path, help="a source tree to run as aifetch-before "
                        "(an older commit, e.g. from `git worktree add`)")  # fmt: skip
    return parser.parse_args(argv)


def selected(only: str, quick: bool) -> tuple[list[str], dict[str, str]]:
    names = [n.strip() for n in only.split(",") if n.strip()] or list(ALL_TARGETS)
    unknown = set(names) - set(ALL_TARGETS)
    if unknown:
        raise SystemExit(f"unknown target(s) {sorted(unknown)}; choose from {ALL_TARGETS}")
    chosen, skipped = ["direct"], {}
    for name in (n for n in ALL_TARGETS if n in names and n != "direct"):
        if (why := missing(name)) is None:
            chosen.append(name)
        elif quick:
            skipped[name] = why
        else:
            raise SystemExit(f"{name}: {why} (use --quick or --only to leave it out)")
    return chosen, skipped


def main(argv: list[str] | None = None) -> int:
    global BEFORE
    args = parse_args(argv)
    if args.before is not None:
        BEFORE = args.before.resolve()
    elif not args.only:
        args.only = ",".join(n for n in ALL_TARGETS if n != "aifetch-before")
    plan = dataclasses.replace(QUICK if args.quick else Plan(), concurrency=args.concurrency)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores: proxies on core 1, load and upstream on core 0")
    names, skipped = selected(args.only, args.quick)
    os.sched_setaffinity(0, {int(LOAD_CORE)})  # the sequential client is load too
    # SIGTERM becomes SystemExit, so the finally blocks and exit stacks stop every child.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rounds, failures = run(names, args, plan)
    print(report(rounds, failures | skipped, plan))
    if args.json is not None:
        data = {"plan": asdict(plan), "failures": failures | skipped,
                "rounds": {name: [asdict(r) for r in rs] for name, rs in rounds.items()}}  # fmt: skip
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
