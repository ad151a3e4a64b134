"""The official openai SDK against the real gateway with limits on: it reads the
``x-ratelimit-*`` headers and ``Retry-After`` of the gateway's 429, its own retry waits
the time the gateway gave, and a wait longer than it will make (a spent budget) is not
retried at all. When each call reached the gateway is read from the gateway's own access
log (arrival = logged time - duration)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import openai
import pytest

from aifetch.gateway import GatewayConfig
from tests.gateway.conftest import RunningGateway, config_for
from tests.governance._fleet import room_in_minute

KEY = "sk-sdk-caller-0123456789"
BROKE_KEY = "sk-sdk-broke-0123456789"
# The mock streams for about half a second: the one stream slot is taken meanwhile.
MOCK = {"kind": "mock", "mock": {"chunks": 5, "interval": 0.1}}
BROKE = {"budget": {"usd": 0.01, "per": "month"}}
PRICED = {"targets": [{"upstream": "mock"}], "price": {"input": 1000, "output": 1000}}


@pytest.fixture
def gateway() -> Iterator[RunningGateway]:
    config: GatewayConfig = config_for(
        upstreams={"mock": MOCK},
        models={"priced": PRICED},
        callers=[
            {"name": "sdk", "key": KEY, "limits": {"rpm": 100, "tpm": 100_000, "max_streams": 1}},
            {"name": "broke", "key": BROKE_KEY, "limits": BROKE},
        ],
    )
    gateway = RunningGateway(config)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> Iterator[list[dict[str, Any]]]:
    """The gateway's access records, each with its ``arrived`` time (epoch seconds)."""
    caplog.set_level(logging.INFO, logger="aifetch.gateway.access")
    records: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            data = msgspec.json.decode(record.getMessage())
            data["arrived"] = data["ts"] - data["duration_ms"] / 1000
            records.append(data)

    handler = Collect()
    logger = logging.getLogger("aifetch.gateway.access")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def _client(gateway: RunningGateway, retries: int, key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=retries)


_MESSAGES: Any = [{"role": "user", "content": "hello"}]


async def _hold_the_stream_slot(client: openai.AsyncOpenAI) -> Any:
    """A stream that has begun (its slot taken); read the rest to free it."""
    stream = await client.chat.completions.create(
        model="mock-gpt", messages=_MESSAGES, stream=True, max_tokens=5
    )
    await stream.__anext__()
    return stream


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


async def test_the_sdk_reads_the_headers_of_the_gateways_429(gateway: RunningGateway) -> None:
    room_in_minute(5)  # both calls counted in one fixed minute
    async with _client(gateway, 0) as strict:
        holding = await _hold_the_stream_slot(strict)
        with pytest.raises(openai.RateLimitError) as refused:
            await strict.chat.completions.create(
                model="mock-gpt", messages=_MESSAGES, stream=True, max_tokens=5
            )
        await _drain(holding)
    error = refused.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    headers = error.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("1", "1000")
    assert headers["x-ratelimit-limit-requests"] == "100"
    assert headers["x-ratelimit-remaining-requests"] == "99"  # the refused call took nothing
    assert headers["x-ratelimit-limit-tokens"] == "100000"
    assert int(headers["x-ratelimit-remaining-tokens"]) < 100_000
    assert headers["x-ratelimit-reset-requests"] == headers["x-ratelimit-reset-tokens"]


async def test_the_sdks_retry_waits_the_time_the_gateway_gave(
    gateway: RunningGateway, access_log: list[dict[str, Any]]
) -> None:
    async with _client(gateway, 0) as first, _client(gateway, 2) as patient:
        holding = await _hold_the_stream_slot(first)
        drained = asyncio.ensure_future(_drain(holding))  # ends in about half a second
        started = time.monotonic()
        stream = await patient.chat.completions.create(
            model="mock-gpt", messages=_MESSAGES, stream=True, max_tokens=5
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        took = time.monotonic() - started
        await drained
    assert text
    deadline = time.monotonic() + 5
    while len(access_log) < 3:
        assert time.monotonic() < deadline, access_log
        await asyncio.sleep(0.02)
    statuses = [r["status"] for r in sorted(access_log, key=lambda r: r["arrived"])]
    assert statuses == [200, 429, 200]
    _, refused, retried = sorted(access_log, key=lambda r: r["arrived"])
    # The gateway said 1 s (retry-after-ms: 1000); the SDK adds no jitter to a server's wait.
    waited = retried["arrived"] - refused["ts"]
    assert 0.95 <= waited <= 1.5, waited
    assert took < 2.5


async def test_a_spent_budget_is_not_retried_by_the_sdk(
    gateway: RunningGateway, access_log: list[dict[str, Any]]
) -> None:
    async with _client(gateway, 2, BROKE_KEY) as client:
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(model="priced", messages=_MESSAGES)
    assert refused.value.code == "insufficient_quota"
    # Retry-After is the end of the month, past what the SDK waits for: one call only.
    assert int(refused.value.response.headers["retry-after"]) > 120
    await asyncio.sleep(0.2)
    assert [r["status"] for r in access_log] == [429]
