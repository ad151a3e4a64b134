"""Redis stopped (SIGKILL) and restarted under a loop of admissions: no admission is lost
or hangs, ``on_state_error`` is followed both ways, and the governor reconnects by itself."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from aifetch.gateway import GatewayError
from aifetch.gateway.governance import Estimate, Governor, Usage
from tests.governance.conftest import make_config, running
from tests.support.services import RedisServer

# No admission may take longer than this, outage or not (state_timeout is 0.3 s).
_HANG = 2.0


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


async def _admissions(gov: Governor, outcomes: Counter[str], stop: asyncio.Event) -> None:
    """Admit and settle calls back to back (8 at a time), recording each outcome."""
    who = gov.caller("busy")
    assert who is not None

    async def one() -> None:
        while not stop.is_set():
            try:
                admission = await asyncio.wait_for(
                    gov.admit(who, "m1", Estimate(10, 10), stream=True), _HANG
                )
            except TimeoutError:
                outcomes["hung"] += 1
                continue
            except GatewayError as exc:
                outcomes[f"{exc.status} {exc.code}"] += 1
                await asyncio.sleep(0.005)
                continue
            outcomes["local" if admission.local else "shared"] += 1
            await asyncio.sleep(0.002)
            gov.settle(admission, Usage(5, 5))

    await asyncio.gather(*(one() for _ in range(8)))


async def _until(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _outage(mode: str, server: RedisServer) -> tuple[Counter[str], Counter[str], Governor]:
    config = make_config(
        state=server.url,
        on_state_error=mode,
        governance={"prefix": "fault:", "state_timeout": 0.3, "settle_interval": 0.02},
        callers=[
            {"name": "busy", "key": "k", "limits": {"rpm": 10**7, "tpm": 10**9, "max_streams": 100}}
        ],
    )
    before: Counter[str] = Counter()
    during: Counter[str] = Counter()
    after: Counter[str] = Counter()
    async with running(config) as gov:
        assert gov.shared is not None
        for outcomes, action in ((before, "stop"), (during, "start"), (after, None)):
            stop = asyncio.Event()
            task = asyncio.create_task(_admissions(gov, outcomes, stop))
            await asyncio.sleep(0.5)
            if action == "stop":
                server.stop()  # SIGKILL, mid-load
                await _until(lambda: not gov.shared.available, 5)  # type: ignore[union-attr]
            elif action == "start":
                await asyncio.sleep(0.5)
                server.start()
                await _until(lambda: gov.shared.available, 5)  # type: ignore[union-attr]
            stop.set()
            await asyncio.wait_for(task, 10)
        merged = before + during
        metrics = {m.name: m for m in gov.metrics.collect()}
        assert metrics["aifetch_gateway_state_outages"].samples[0].value == 1
    return merged, after, gov


async def test_open_admits_locally_and_reconnects(private_redis: RedisServer) -> None:
    outage, after, gov = await _outage("open", private_redis)
    assert outage["hung"] == 0
    assert after["hung"] == 0
    assert outage["shared"] > 0
    assert outage["local"] > 0  # served on local counters while Redis was away
    assert not [k for k in outage if k[0].isdigit()]  # nothing refused: no call lost
    assert gov.metrics.state_local == outage["local"]
    # Back on Redis by itself, and its counters are in the restarted server.
    assert after["shared"] > 0
    assert after["local"] == 0
    client = redis.Redis.from_url(private_redis.url)
    try:
        assert any(client.scan_iter(match="fault:*"))
    finally:
        client.close()


async def test_closed_refuses_with_503_and_reconnects(private_redis: RedisServer) -> None:
    outage, after, gov = await _outage("closed", private_redis)
    assert outage["hung"] == 0
    assert outage["local"] == 0
    assert outage["503 state_unavailable"] > 0
    assert gov.metrics.state_refused == outage["503 state_unavailable"]
    assert after["shared"] > 0
    assert not [k for k in after if k != "shared"]


async def test_settlements_wait_for_redis_and_then_apply(private_redis: RedisServer) -> None:
    config = make_config(
        state=private_redis.url,
        governance={"prefix": "settle:", "state_timeout": 0.3, "settle_interval": 0.02},
        callers=[{"name": "busy", "key": "k", "limits": {"max_streams": 1}}],
    )
    async with running(config) as gov:
        assert gov.shared is not None
        who = gov.caller("busy")
        assert who is not None
        admission = await gov.admit(who, "m1", Estimate(1, 1), stream=True)
        # Redis pauses (not restarted: its data stays) while the call ends.
        private_redis.pause()
        try:
            gov.settle(admission, Usage(1, 1))
            await _until(lambda: not gov.shared.available, 5)  # type: ignore[union-attr]
            assert gov.shared.pending == 1
        finally:
            private_redis.resume()
        await _until(lambda: gov.shared.available and gov.shared.pending == 0, 5)  # type: ignore[union-attr]
        # The slot was freed in Redis: a new stream fits.
        again = await gov.admit(who, "m1", Estimate(1, 1), stream=True)
        assert not again.local
