"""Redis killed and restarted under load, between two real gateway processes sharing it:
no call is lost (every request is answered, and every one has its ledger row in
PostgreSQL), ``on_state_error`` is followed (``open``: served on each process's own
counters; ``closed``: 503 ``state_unavailable``), and both gateways go back to Redis by
themselves when it returns."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from tests.governance._fleet import Backend, fleet, migrate, usage_report, write_config
from tests.governance.test_fleet_gateways import Answer, body, call
from tests.support.services import RedisServer

pytestmark = pytest.mark.slow

KEY = "sk-fleet-busy-caller-0123"
LIMITS = {"rpm": 10**6, "tpm": 10**9, "max_streams": 1000}
WORKERS = 6
PHASE = 1.0


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


async def _metric(session: aiohttp.ClientSession, url: str, pattern: str) -> float:
    async with session.get(url + "/metrics") as resp:
        text = await resp.text()
    match = re.search(pattern, text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


_UP = r"^aifetch_gateway_state_up (\S+)$"
_LOCAL = r'^aifetch_gateway_state_unavailable_total\{action="admitted_locally"\} (\S+)$'


async def _all_report_up(session: aiohttp.ClientSession, urls: list[str], up: bool) -> None:
    deadline = time.monotonic() + 10
    while True:
        states = [await _metric(session, url, _UP) for url in urls]
        if all(s == (1.0 if up else 0.0) for s in states):
            return
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.05)


Phased = list[tuple[str, Answer]]


async def _under_load(urls: list[str], server: RedisServer) -> tuple[Phased, float]:
    """Calls back to back (plain and streamed, over both gateways) while Redis is killed
    and restarted; each answer with its phase, and the calls admitted locally."""
    phase = "before"
    answers: list[tuple[str, Answer]] = []
    stop = asyncio.Event()
    plain, streamed = body(max_tokens=5), body(stream=True, max_tokens=5)

    async def worker(session: aiohttp.ClientSession, n: int) -> None:
        i = n
        while not stop.is_set():
            i += 1
            raw = streamed if i % 2 else plain
            started_in = phase
            answer = await call(session, urls[i % len(urls)], KEY, raw)
            # A call that began in one phase and ended in the next is the outage's.
            label = "during" if "during" in (started_in, phase) else phase
            answers.append((label, answer))

    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        load = asyncio.gather(*(worker(session, n) for n in range(WORKERS)))
        await asyncio.sleep(PHASE)
        phase = "during"
        server.stop()  # SIGKILL, mid-load
        await _all_report_up(session, urls, up=False)
        await asyncio.sleep(PHASE)
        server.start()  # the same port, empty
        await _all_report_up(session, urls, up=True)
        phase = "after"
        await asyncio.sleep(PHASE)
        stop.set()
        await load
        local = sum([await _metric(session, url, _LOCAL) for url in urls])
    return answers, local


@pytest.mark.parametrize("on_state_error", ["open", "closed"])
def test_redis_killed_and_restarted_under_load_loses_no_call(
    on_state_error: str, private_redis: RedisServer, pg_url: str, tmp_path: Path
) -> None:
    backend = Backend(
        "redis+postgresql",
        {
            "state": private_redis.url,
            "on_state_error": on_state_error,
            "ledger": pg_url,
            "governance": {"prefix": "faults:", "state_timeout": 0.3, "settle_interval": 0.02},
        },
        processes=2,
        postgres=True,
    )
    callers = [{"name": "busy", "key": KEY, "limits": LIMITS}]
    config = write_config(tmp_path / "gateway.yaml", backend, callers=callers)
    migrate(config, backend)
    with fleet(config, 2, tmp_path) as urls:
        answers, local = asyncio.run(_under_load(urls, private_redis))
        client = redis.Redis.from_url(private_redis.url)
        try:  # back on Redis: the calls after the restart counted there
            assert any(client.scan_iter(match="faults:*"))
        finally:
            client.close()

    by_phase: dict[str, Counter[tuple[int, str | None]]] = {}
    for label, answer in answers:
        by_phase.setdefault(label, Counter())[(answer.status, answer.code)] += 1
        if answer.status == 200:
            assert answer.complete
    assert set(by_phase) == {"before", "during", "after"}, by_phase
    assert set(by_phase["before"]) == {(200, None)}
    assert set(by_phase["after"]) == {(200, None)}
    if on_state_error == "open":
        assert set(by_phase["during"]) == {(200, None)}
        assert local > 0  # served on the gateways' own counters meanwhile
    else:
        assert set(by_phase["during"]) <= {(200, None), (503, "state_unavailable")}
        assert by_phase["during"][(503, "state_unavailable")] > 0
        assert local == 0
        refused = [a for label, a in answers if a.status == 503]
        assert all(a.headers.get("retry-after") == "1" for a in refused)

    # Every call is in the ledger, its refusals counted as errors.
    line = usage_report(config, "caller")["busy"]
    assert line["calls"] == len(answers)
    assert line["errors"] == sum(a.status != 200 for _, a in answers)
