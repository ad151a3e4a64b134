"""The load harness: a fake upstream and a gateway, each in a process of its own, and a
load client in this process that keeps N streams open through the gateway.

Every relayed stream is checked byte for byte: the fake upstream's output is a pure
function of the request body (``tests/support/fake_upstream.py``, ``DefaultHandler``), so
the expected bytes of each distinct request are fetched once, straight from the
upstream, and every stream the caller reads through the gateway must have the same
length and BLAKE2b digest. Nothing is parsed on the caller's side: a lost, duplicated,
reordered or truncated byte is a mismatch.

Measured from ``/proc`` (Linux): the gateway's RSS (idle, peak, after a settle), its CPU
time (utime + stime) over the run, and its TCP sockets (caller side: local port = the
gateway's; upstream side: remote port = the upstream's), so a leaked connection shows.

Shared by ``bench/load_gateway.py`` (1,000 streams for 60 s) and
``tests/proof/test_load_short.py`` (200 streams for ~10 s, in CI). Loopback only; every
child is started in its own session and stopped by its PID, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import resource
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec

from tests.support.child import LISTENING, ROOT, SERVE, Child

PUBLIC_MODEL = "load-model"
UPSTREAM_MODEL = "fake-model"
CALLER_KEY = "sk-load-caller-0123456789"
UPSTREAM_KEY = "sk-load-upstream-0123456789"
CHAT = "/v1/chat/completions"
# The LISTEN state in /proc/net/tcp (include/net/tcp_states.h).
_TCP_LISTEN = "0A"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- processes


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (children inherit it);
    the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


@dataclass(frozen=True)
class Services:
    upstream: Child
    upstream_url: str
    gateway: Child
    gateway_url: str
    # "aifetch", or "passthrough" (bench/passthrough.py in the gateway's place, the floor
    # it is measured against): callers then send the upstream's own model name.
    proxy: str = "aifetch"

    @property
    def gateway_port(self) -> int:
        return _port_of(self.gateway_url)

    @property
    def upstream_port(self) -> int:
        return _port_of(self.upstream_url)


def gateway_yaml(upstream_url: str, max_connections: int) -> str:
    """A gateway config for the run: one caller key, one model on the fake upstream.

    The pool is sized above the stream count so no request queues for a connection. The
    access log is off (a line per stream would measure logging); usage accounting and
    metrics are on, as they always are. Heartbeats keep their default (15 s): a paced
    stream never waits that long, so no ``: ping`` is inserted into the relayed bytes.
    """
    return (
        "upstreams:\n"
        "  fake:\n"
        f"    base_url: {upstream_url}/v1\n"
        f"    api_key: {UPSTREAM_KEY}\n"
        f"    max_connections: {max_connections}\n"
        "    timeout: {connect: 10, first_byte: 30, idle: 30}\n"
        "models:\n"
        f"  {PUBLIC_MODEL}:\n"
        f"    targets: [{{upstream: fake, model: {UPSTREAM_MODEL}}}]\n"
        "callers:\n"
        "  - name: load\n"
        f"    key: {CALLER_KEY}\n"
        f"    models: [{PUBLIC_MODEL}]\n"
        "server:\n"
        "  access_log: false\n"
    )


@contextlib.contextmanager
def services(
    workdir: Path,
    *,
    chunks: int,
    chunk_delay: float,
    max_connections: int,
    proxy: str = "aifetch",
) -> Iterator[Services]:
    """The fake upstream and ``aifetch serve`` (or the bare passthrough) on free loopback
    ports; both stopped on exit."""
    children: list[Child] = []
    try:
        upstream = Child(
            "fake upstream",
            [
                *(sys.executable, "-m", "tests.support.fake_upstream", "--port", "0"),
                *("--chunks", str(chunks), "--chunk-delay", str(chunk_delay)),
            ],
            workdir / "upstream.log",
        )
        children.append(upstream)
        upstream_url = upstream.wait_for(r"READY (http://127\.0\.0\.1:\d+)").group(1)
        if proxy == "passthrough":
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                free = probe.getsockname()[1]
            gateway = Child(
                "passthrough",
                [sys.executable, str(ROOT / "bench" / "passthrough.py"),
                 "--upstream", upstream_url, "--port", str(free)],
                workdir / "passthrough.log",
            )  # fmt: skip
            children.append(gateway)
            port = gateway.wait_for(r"READY http://127\.0\.0\.1:(\d+)").group(1)
        else:
            config = workdir / "gateway.yaml"
            config.write_text(gateway_yaml(upstream_url, max_connections))
            gateway = Child(
                "gateway",
                [
                    *SERVE,
                    *("--config", str(config), "--port", "0", "--log-level", "info"),
                ],
                workdir / "gateway.log",
            )
            children.append(gateway)
            port = gateway.wait_for(LISTENING).group(1)
        yield Services(upstream, upstream_url, gateway, f"http://127.0.0.1:{port}", proxy)
    finally:
        for child in reversed(children):
            child.stop()


# --------------------------------------------------------------------------- /proc


def rss_bytes(pid: int) -> int:
    """Resident set size now (``/proc/<pid>/statm``, second field, in pages)."""
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (``/proc/<pid>/stat`` fields 14 and 15, proc(5))."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may hold spaces; the fields after it do not.
        after_name = stat.read().rsplit(")", 1)[1].split()
    return (int(after_name[11]) + int(after_name[12])) / _CLOCK_TICKS


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass(frozen=True)
class TcpCounts:
    """TCP connections the gateway process holds open (a socket among its fds)."""

    caller_side: int  # accepted by the gateway (local port = the gateway's)
    upstream_side: int  # to the upstream (remote port = the upstream's)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def tcp_counts(pid: int, gateway_port: int, upstream_port: int) -> TcpCounts:
    """Only sockets ``pid`` holds are counted: an orphaned socket finishing its close
    in the kernel (FIN_WAIT2, LAST_ACK) has no descriptor and is not a leak."""
    owned = _socket_inodes(pid)
    caller = upstream = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(path) as table:
            next(table)  # header
            for line in table:
                cols = line.split()
                if cols[3] == _TCP_LISTEN or cols[9] not in owned:
                    continue
                caller += int(cols[1].rsplit(":", 1)[1], 16) == gateway_port
                upstream += int(cols[2].rsplit(":", 1)[1], 16) == upstream_port
    return TcpCounts(caller, upstream)


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread: the peak, and the
    series as (monotonic time, bytes) for the growth while the load is steady."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = rss_bytes(pid)
        self.series: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                rss = rss_bytes(self.pid)
                self.peak = max(self.peak, rss)
                self.series.append((time.monotonic(), rss))

    def at(self, when: float) -> int:
        """The first sample taken at or after ``when`` (the last one if none is)."""
        return next((rss for t, rss in self.series if t >= when), self.series[-1][1])

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Variant:
    """One distinct request: what the caller sends, and what the upstream answers to it."""

    body: bytes  # sent to the gateway
    direct_body: bytes  # the same request as the caller would make to the upstream
    digest: bytes = b""
    length: int = 0
    events: int = 0


def variants(count: int) -> list[Variant]:
    """``count`` distinct stream requests. Prompts differ in length, so each answer's
    usage differs; every other one asks for usage, so the gateway's usage stripping (a
    rewrite of every chunk) is checked byte for byte too."""
    out = []
    for i in range(count):
        message = {"role": "user", "content": " ".join(["load"] * (i + 1))}
        body: dict[str, object] = {"model": PUBLIC_MODEL, "messages": [message], "stream": True}
        if i % 2 == 0:
            body["stream_options"] = {"include_usage": True}
        out.append(
            Variant(
                msgspec.json.encode(body),
                msgspec.json.encode({**body, "model": UPSTREAM_MODEL}),
            )
        )
    return out


async def _read_all(response: aiohttp.ClientResponse) -> bytes:
    return b"".join([chunk async for chunk in response.content.iter_any()])


async def expected(upstream_url: str, plan: Sequence[Variant]) -> list[Variant]:
    """Each variant with the digest, length and event count of the upstream's own answer."""
    async with aiohttp.ClientSession() as session:

        async def one(variant: Variant) -> Variant:
            async with session.post(
                upstream_url + CHAT,
                data=variant.direct_body,
                headers={"content-type": "application/json"},
            ) as response:
                if response.status != 200:
                    raise RuntimeError(f"upstream answered {response.status} directly")
                data = await _read_all(response)
            if not data.endswith(b"data: [DONE]\n\n"):
                raise RuntimeError("the upstream's own stream did not end with [DONE]")
            return Variant(
                variant.body,
                variant.direct_body,
                hashlib.blake2b(data).digest(),
                len(data),
                data.count(b"\n\n"),
            )

        return list(await asyncio.gather(*(one(v) for v in plan)))


# --------------------------------------------------------------------------- load client


@dataclass
class LoadResult:
    streams: int = 0  # completed and byte-exact
    chunks: int = 0  # SSE events in those streams
    bytes: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    peak_open: int = 0  # most streams open at once
    min_open_held: int = 0  # fewest open at once while the load was held
    elapsed: float = 0.0
    first_errors: list[str] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def fail(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.first_errors) < 10:
            self.first_errors.append(f"{kind}: {detail}")


class _Load:
    """N workers, each opening one stream after another until the deadline."""

    def __init__(
        self,
        url: str,
        plan: Sequence[Variant],
        streams: int,
        duration: float,
        ramp: float,
        stream_timeout: float,
        direct: bool = False,
    ) -> None:
        self.url = url + CHAT
        self.direct = direct  # send each request as the upstream would take it
        self.plan = plan
        self.streams = streams
        self.duration = duration
        self.ramp = ramp
        self.timeout = aiohttp.ClientTimeout(total=stream_timeout, sock_connect=10)
        self.headers = {"authorization": f"Bearer {CALLER_KEY}", "content-type": "application/json"}
        self.result = LoadResult()
        self.open = 0

    async def run(self) -> LoadResult:
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.deadline = start + self.ramp + self.duration
        self.held_from = start + self.ramp
        # One connection per stream: a caller per socket, as 1,000 users would be.
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector, timeout=self.timeout) as session:
            watcher = asyncio.ensure_future(self._watch_open())
            try:
                await asyncio.gather(*(self._worker(session, i) for i in range(self.streams)))
            finally:
                watcher.cancel()
        self.result.elapsed = loop.time() - start
        return self.result

    async def _watch_open(self) -> None:
        loop = asyncio.get_running_loop()
        lowest: int | None = None
        while True:
            await asyncio.sleep(0.05)
            now = loop.time()
            if self.held_from + 1.0 <= now <= self.deadline - 0.5:
                lowest = self.open if lowest is None else min(lowest, self.open)
                self.result.min_open_held = lowest

    async def _worker(self, session: aiohttp.ClientSession, index: int) -> None:
        loop = asyncio.get_running_loop()
        # Spread the connects over the ramp rather than 1,000 SYNs in one instant.
        await asyncio.sleep(self.ramp * index / self.streams)
        turn = index
        while True:  # at least one stream each, then more until the deadline
            await self._one(session, self.plan[turn % len(self.plan)])
            turn += self.streams
            if loop.time() >= self.deadline:
                return

    async def _one(self, session: aiohttp.ClientSession, variant: Variant) -> None:
        result = self.result
        self.open += 1
        result.peak_open = max(result.peak_open, self.open)
        try:
            body = variant.direct_body if self.direct else variant.body
            async with session.post(self.url, data=body, headers=self.headers) as resp:
                if resp.status != 200:
                    result.fail(f"status {resp.status}", (await resp.read())[:300].decode())
                    return
                digest = hashlib.blake2b()
                size = 0
                async for chunk in resp.content.iter_any():
                    digest.update(chunk)
                    size += len(chunk)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            result.fail(type(exc).__name__, str(exc)[:300])
            return
        finally:
            self.open -= 1
        if size != variant.length or digest.digest() != variant.digest:
            result.fail("mismatch", f"{size} bytes received, {variant.length} sent by upstream")
            return
        result.streams += 1
        result.chunks += variant.events
        result.bytes += size


async def run_load(
    url: str,
    plan: Sequence[Variant],
    *,
    streams: int,
    duration: float,
    ramp: float = 2.0,
    stream_timeout: float = 120.0,
    direct: bool = False,
) -> LoadResult:
    """Hold ``streams`` streams open through the gateway at ``url`` for ``duration``
    seconds after a ``ramp``; streams started before the deadline run to their end.
    ``direct``: the proxy renames nothing (the passthrough), so callers send what the
    upstream takes."""
    return await _Load(url, plan, streams, duration, ramp, stream_timeout, direct).run()


async def gateway_statuses(url: str) -> dict[str, float]:
    """``aifetch_gateway_requests_total`` by status, from the gateway's /metrics."""
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        text = await response.text()
    out: dict[str, float] = {}
    series = r'^aifetch_gateway_requests_total\{model="%s",status="(\d+)"\} (\S+)'
    pattern = series % re.escape(PUBLIC_MODEL)
    for match in re.finditer(pattern, text, re.M):
        out[match.group(1)] = out.get(match.group(1), 0.0) + float(match.group(2))
    return out


# --------------------------------------------------------------------------- one whole run


@dataclass
class RunReport:
    streams: int
    duration: float
    load: LoadResult
    rss_start: int  # after start-up and a warm-up, before the load
    rss_peak: int
    rss_after: int  # after the load and a settle
    # RSS while the load was steady (from a third of the hold to its end): a leak per
    # stream served would show as growth here, where the number of open streams is flat.
    rss_steady: tuple[int, int]
    steady_seconds: float
    cpu_seconds: float  # the gateway's, over the load
    statuses: dict[str, float]  # the gateway's own count, by status
    tcp_before: TcpCounts
    tcp_after: TcpCounts
    fds_before: int
    fds_after: int
    upstream_cpu: float = 0.0
    client_cpu: float = 0.0

    @property
    def per_stream_bytes(self) -> float:
        return (self.rss_peak - self.rss_start) / self.streams

    @property
    def cpu_us_per_chunk(self) -> float:
        return self.cpu_seconds / self.load.chunks * 1e6 if self.load.chunks else float("inf")

    @property
    def chunks_per_second(self) -> float:
        return self.load.chunks / self.load.elapsed if self.load.elapsed else 0.0


async def measured_run(
    svc: Services,
    *,
    streams: int,
    duration: float,
    variant_count: int = 16,
    warmup: int = 20,
    settle: float = 5.0,
    ramp: float = 2.0,
) -> RunReport:
    """Warm up, measure the idle gateway, hold the load, settle, measure again."""
    plan = await expected(svc.upstream_url, variants(variant_count))
    direct = svc.proxy == "passthrough"
    # Warm-up: lazy imports and first-use allocations are start-up cost, not load.
    warm = await run_load(
        svc.gateway_url, plan, streams=warmup, duration=0.0, ramp=0.0, direct=direct
    )
    if warm.error_count:
        raise RuntimeError(f"warm-up failed: {warm.first_errors}")
    await asyncio.sleep(0.5)
    gw, up = svc.gateway.pid, svc.upstream.pid
    ports = (svc.gateway_port, svc.upstream_port)
    tcp_before = tcp_counts(gw, *ports)
    fds_before = open_fds(gw)
    rss_start = rss_bytes(gw)
    cpu0, up0, me0 = cpu_seconds(gw), cpu_seconds(up), cpu_seconds(os.getpid())
    began = time.monotonic()
    steady = (began + ramp + duration / 3, began + ramp + duration)
    with RssSampler(gw) as sampler:
        load = await run_load(
            svc.gateway_url, plan, streams=streams, duration=duration, ramp=ramp, direct=direct
        )
    cpu = cpu_seconds(gw) - cpu0
    upstream_cpu, client_cpu = cpu_seconds(up) - up0, cpu_seconds(os.getpid()) - me0
    await asyncio.sleep(settle)
    # Sockets and memory first: the /metrics call below opens a caller connection of its own.
    tcp_after, fds_after, rss_after = tcp_counts(gw, *ports), open_fds(gw), rss_bytes(gw)
    return RunReport(
        streams=streams,
        duration=duration,
        load=load,
        rss_start=rss_start,
        rss_peak=sampler.peak,
        rss_after=rss_after,
        rss_steady=(sampler.at(steady[0]), sampler.at(steady[1])),
        steady_seconds=steady[1] - steady[0],
        cpu_seconds=cpu,
        statuses={} if direct else await gateway_statuses(svc.gateway_url),
        tcp_before=tcp_before,
        tcp_after=tcp_after,
        fds_before=fds_before,
        fds_after=fds_after,
        upstream_cpu=upstream_cpu,
        client_cpu=client_cpu,
    )


def _pair(a: object, b: object) -> str:
    return f"{a} / {b}"


def summary(report: RunReport) -> list[tuple[str, str]]:
    """The figures as (name, value) rows."""
    mb = 1024 * 1024
    load, before, after = report.load, report.tcp_before, report.tcp_after
    rss = (report.rss_start, report.rss_peak, report.rss_after)
    growth = (report.rss_steady[1] - report.rss_steady[0]) / mb
    statuses = ", ".join(f"{k}: {v:.0f}" for k, v in report.statuses.items())
    return [
        ("streams held (target)", f"{report.streams}"),
        ("open at once: peak / lowest while held", _pair(load.peak_open, load.min_open_held)),
        ("hold time (s)", f"{report.duration:.0f} (+ ramp; elapsed {load.elapsed:.1f})"),
        ("streams completed, byte-exact", f"{load.streams}"),
        ("chunks relayed (SSE events)", f"{load.chunks}"),
        ("bytes relayed", f"{load.bytes}"),
        ("errors (incl. mismatches)", f"{load.error_count} {dict(load.errors) or ''}".strip()),
        ("gateway statuses (/metrics, running total)", statuses),
        ("throughput (chunks/s)", f"{report.chunks_per_second:,.0f}"),
        ("gateway RSS start / peak / after (MB)", " / ".join(f"{x / mb:.1f}" for x in rss)),
        ("memory per open stream (KB)", f"{report.per_stream_bytes / 1024:.1f}"),
        (f"RSS growth while steady, last {report.steady_seconds:.0f} s (MB)", f"{growth:+.1f}"),
        ("gateway CPU (s) / per chunk (µs)",
         _pair(f"{report.cpu_seconds:.1f}", f"{report.cpu_us_per_chunk:.1f}")),
        ("upstream CPU (s) / load client CPU (s)",
         _pair(f"{report.upstream_cpu:.1f}", f"{report.client_cpu:.1f}")),
        ("gateway fds before / after", _pair(report.fds_before, report.fds_after)),
        ("caller TCP before / after", _pair(before.caller_side, after.caller_side)),
        ("upstream TCP before / after", _pair(before.upstream_side, after.upstream_side)),
    ]  # fmt: skip
