"""Governance through real gateway processes (``aifetch serve``), each test on both
backends: two gateways sharing Redis and PostgreSQL, and one gateway on memory state and
SQLite, which needs no service at all (tests/governance/_fleet.py).

- one RPM limit and one TPM limit hold across both gateways together, and the ledger has
  a row for every call of both, which ``aifetch usage`` reports exactly;
- 50 concurrent long calls cannot overshoot a token limit or a budget by more than one
  call's estimate;
- a virtual key made on one gateway works on both, and once revoked stops on both
  within 5 s;
- ``aifetch serve --workers 2`` on Redis shares one limit between its workers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.governance._fleet import (
    MODEL,
    Backend,
    fleet,
    migrate,
    room_in_minute,
    usage_report,
    write_config,
)

pytestmark = pytest.mark.slow

KEY_RPM = "sk-fleet-rpm-caller-0123"
KEY_TPM = "sk-fleet-tpm-caller-0123"
KEY_TOKENS = "sk-fleet-tokens-caller-0123"
KEY_SPEND = "sk-fleet-spend-caller-0123"
ADMIN_KEY = "sk-fleet-admin-0123456789"
# USD per million tokens (tests/governance/_fleet.PRICE) in nano-USD per token.
NANO_IN, NANO_OUT = 100_000, 200_000
_TIMEOUT = aiohttp.ClientTimeout(total=30)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    usage: dict[str, int] | None = None
    code: str | None = None
    complete: bool = False

    @property
    def tokens(self) -> int:
        assert self.usage is not None
        return self.usage["prompt_tokens"] + self.usage["completion_tokens"]

    @property
    def cost_nano(self) -> int:
        assert self.usage is not None
        return self.usage["prompt_tokens"] * NANO_IN + self.usage["completion_tokens"] * NANO_OUT


def body(*, stream: bool = False, max_tokens: int = 50, text: str = "Say hello") -> bytes:
    data: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
    }
    if stream:
        data |= {"stream": True, "stream_options": {"include_usage": True}}
    return json.dumps(data).encode()


def estimate(raw: bytes, max_tokens: int) -> int:
    """What admission reserves (docs/GATEWAY.md): about 4 bytes a token, plus max_tokens."""
    return -(-len(raw) // 4) + max_tokens


async def call(session: aiohttp.ClientSession, url: str, key: str, raw: bytes) -> Answer:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    async with session.post(url + "/v1/chat/completions", data=raw, headers=headers) as resp:
        data = await resp.read()
        answer = Answer(resp.status, {k.lower(): v for k, v in resp.headers.items()})
    if resp.status != 200:
        answer.code = json.loads(data)["error"]["code"]
        return answer
    if not data.startswith(b"data:"):
        answer.usage, answer.complete = json.loads(data)["usage"], True
        return answer
    for block in data.split(b"\n\n"):
        if block.startswith(b"data: {") and b'"usage":{' in block:
            answer.usage = json.loads(block[6:])["usage"]
    answer.complete = data.endswith(b"data: [DONE]\n\n")
    return answer


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=_TIMEOUT)


# --------------------------------------------------------------------------- RPM, TPM, ledger

RPM = 40
TPM = 3000


async def _rpm_run(urls: list[str], total: int) -> list[Answer]:
    """``total`` calls, 8 at a time, spread over every gateway."""
    answers: list[Answer] = []
    turns = iter(range(total))
    raw = body(max_tokens=5)

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in turns:
            answers.append(await call(session, urls[i % len(urls)], KEY_RPM, raw))

    async with _session() as session:
        await asyncio.gather(*(worker(session) for _ in range(8)))
    return answers


async def _tpm_run(url: str, raw: bytes) -> list[Answer]:
    """Calls one after another until the limit refuses twice in a row (settlements of
    both gateways land between the two tries)."""
    answers: list[Answer] = []
    refused_in_a_row = 0
    async with _session() as session:
        while refused_in_a_row < 2:
            answer = await call(session, url, KEY_TPM, raw)
            answers.append(answer)
            if answer.status == 200:
                refused_in_a_row = 0
            else:
                refused_in_a_row += 1
                await asyncio.sleep(0.3)
    return answers


def test_one_rpm_and_one_tpm_limit_across_the_fleet_and_every_call_in_the_ledger(
    backend: Backend, tmp_path: Path
) -> None:
    callers = [
        {"name": "rpm-caller", "key": KEY_RPM, "limits": {"rpm": RPM}},
        {"name": "tpm-caller", "key": KEY_TPM, "limits": {"tpm": TPM}},
    ]
    config = write_config(tmp_path / "gateway.yaml", backend, callers=callers)
    migrate(config, backend)
    raw = body(max_tokens=50)
    with fleet(config, backend.processes, tmp_path) as urls:
        room_in_minute(25)  # both limits counted in one minute window

        async def both() -> tuple[list[Answer], list[list[Answer]]]:
            tpm = asyncio.gather(*(_tpm_run(url, raw) for url in urls))
            return await _rpm_run(urls, RPM + 20), await tpm

        rpm_answers, tpm_runs = asyncio.run(both())

    # RPM: exactly the limit, whichever gateway each call reached.
    statuses = Counter(a.status for a in rpm_answers)
    assert statuses == {200: RPM, 429: 20}, statuses
    refused = [a for a in rpm_answers if a.status == 429]
    assert all(a.code == "rate_limit_exceeded" and "retry-after" in a.headers for a in refused)
    assert all(a.headers["x-ratelimit-limit-requests"] == str(RPM) for a in rpm_answers)

    # TPM: each call reserves its estimate and settles its real usage, so the last call
    # admitted is the one whose estimate still fit: (k - 1) * actual + estimate <= limit.
    admitted = [a for run in tpm_runs for a in run if a.status == 200]
    assert all(run[0].status == 200 for run in tpm_runs)  # every gateway took part
    actual = {a.tokens for a in admitted}
    assert len(actual) == 1, actual  # the same call each time: the same usage
    (used,) = actual
    reserved = estimate(raw, 50)
    assert used < reserved  # settlement gives room back
    most = (TPM - reserved) // used + 1
    # ±1 per process: another gateway's settlement may still be in flight.
    assert most - backend.processes <= len(admitted) <= most, (len(admitted), most)
    tpm_refused = [a for run in tpm_runs for a in run if a.status != 200]
    assert {(a.status, a.code) for a in tpm_refused} == {(429, "rate_limit_exceeded")}

    # A refusal names its ledger row (successful answers do not: a header costs).
    ids = [a.headers["x-aifetch-request-id"] for a in refused]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    assert not any("x-aifetch-request-id" in a.headers for a in rpm_answers if a.status == 200)

    # Every call of every gateway is in the ledger (refused ones as errors), exactly.
    report = usage_report(config, "caller")
    expected = {
        "rpm-caller": ([a for a in rpm_answers if a.status == 200], len(rpm_answers)),
        "tpm-caller": (admitted, sum(len(run) for run in tpm_runs)),
    }
    assert set(report) == set(expected)
    for name, (ok, calls) in expected.items():
        line = report[name]
        assert line["calls"] == calls
        assert line["errors"] == calls - len(ok)
        assert line["prompt_tokens"] == sum(a.usage["prompt_tokens"] for a in ok)  # type: ignore[index]
        assert line["completion_tokens"] == sum(a.usage["completion_tokens"] for a in ok)  # type: ignore[index]
        assert round(line["cost_usd"] * 1e9) == sum(a.cost_nano for a in ok)


# --------------------------------------------------------------------------- 50 at once

CONCURRENT = 50
LONG_TOKENS = 40
# The mock takes ~1 s over each stream: every call is still running when the last starts.
LONG_MOCK = {"chunks": 10, "interval": 0.1}


async def _at_once(urls: list[str], key: str, raw: bytes) -> list[Answer]:
    async with _session() as session:
        return list(
            await asyncio.gather(
                *(call(session, urls[i % len(urls)], key, raw) for i in range(CONCURRENT))
            )
        )


def test_fifty_concurrent_long_calls_cannot_overshoot_a_token_limit_or_a_budget(
    backend: Backend, tmp_path: Path
) -> None:
    raw = body(stream=True, max_tokens=LONG_TOKENS, text="Tell me a long story, please")
    reserved = estimate(raw, LONG_TOKENS)
    prompt_estimate = reserved - LONG_TOKENS
    reserved_cost = prompt_estimate * NANO_IN + LONG_TOKENS * NANO_OUT
    tpm = reserved * 10 + reserved // 2  # room for 10 reservations, not 11
    budget_nano = reserved_cost * 10 + reserved_cost // 2
    callers = [
        {"name": "tokens", "key": KEY_TOKENS, "limits": {"tpm": tpm}},
        {"name": "spend", "key": KEY_SPEND, "limits": {"budget": {"usd": budget_nano / 1e9}}},
    ]
    config = write_config(tmp_path / "gateway.yaml", backend, callers=callers, mock=LONG_MOCK)
    migrate(config, backend)
    with fleet(config, backend.processes, tmp_path) as urls:
        room_in_minute(15)

        async def both() -> tuple[list[Answer], list[Answer]]:
            tokens = _at_once(urls, KEY_TOKENS, raw)
            spend = _at_once(urls, KEY_SPEND, raw)
            return await tokens, await spend

        tokens, spend = asyncio.run(both())

    for answers, limit, cost, refusal in (
        (tokens, tpm, lambda a: a.tokens, "rate_limit_exceeded"),
        (spend, budget_nano, lambda a: a.cost_nano, "insufficient_quota"),
    ):
        admitted = [a for a in answers if a.status == 200]
        refused = [a for a in answers if a.status != 200]
        assert {(a.status, a.code) for a in refused} == {(429, refusal)}
        # Nothing is refused while a reservation still fits: at least ten get through.
        assert 10 <= len(admitted) < CONCURRENT
        assert all(a.complete and a.usage is not None for a in admitted)
        # What the admitted calls used, against the limit: at most one estimate over.
        one_estimate = reserved if limit == tpm else reserved_cost
        assert sum(cost(a) for a in admitted) <= limit + one_estimate


# --------------------------------------------------------------------------- virtual keys

REVOKED_WITHIN = 5.0


async def _admin(
    session: aiohttp.ClientSession, method: str, url: str, data: Any = None
) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    async with session.request(method, url, json=data, headers=headers) as resp:
        return resp.status, await resp.json()


async def _until(predicate: Any, timeout: float) -> float:
    """Seconds until ``await predicate()`` is true (polled every 50 ms)."""
    started = time.monotonic()
    while not await predicate():
        assert time.monotonic() - started < timeout, "timed out"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _key_lifecycle(urls: list[str]) -> tuple[int, list[float]]:
    """Make a key on the first gateway, use it on every one, revoke it on the last; the
    200s it got, and how long each gateway took to refuse it after the revoke."""
    raw = body(max_tokens=5)
    ok = 0
    async with _session() as session:
        spec = {"name": "fleet-key", "models": [MODEL], "rpm": 1000}
        status, made = await _admin(session, "POST", urls[0] + "/admin/keys", spec)
        assert status == 201, made
        key = made["key"]

        async def works_everywhere() -> bool:
            nonlocal ok
            answers = [await call(session, url, key, raw) for url in urls]
            ok += sum(a.status == 200 for a in answers)
            return all(a.status == 200 for a in answers)

        await _until(works_everywhere, REVOKED_WITHIN)
        answer = await call(session, urls[-1], key, raw)
        assert answer.headers["x-ratelimit-limit-requests"] == "1000"  # the key's own limit
        ok += 1

        status, gone = await _admin(session, "DELETE", urls[-1] + "/admin/keys/fleet-key")
        assert (status, gone) == (200, {"name": "fleet-key", "revoked": True})
        revoked_at = time.monotonic()

        async def refused_by(url: str) -> float:
            async def refused() -> bool:
                nonlocal ok
                answer = await call(session, url, key, raw)
                ok += answer.status == 200
                return answer.status == 401 and answer.code == "invalid_api_key"

            await _until(refused, 2 * REVOKED_WITHIN)
            return time.monotonic() - revoked_at

        took = list(await asyncio.gather(*(refused_by(url) for url in urls)))
    return ok, took


def test_a_revoked_virtual_key_stops_on_every_gateway_within_5_seconds(
    backend: Backend, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "gateway.yaml",
        backend,
        keys={"secret": "fleet-key-secret-0123"},
        admin={"key": ADMIN_KEY},
    )
    migrate(config, backend)
    with fleet(config, backend.processes, tmp_path) as urls:
        ok, took = asyncio.run(_key_lifecycle(urls))
    assert max(took) <= REVOKED_WITHIN, took
    # The key's calls are in the ledger under its name (401s never reached a body).
    line = usage_report(config, "key")["fleet-key"]
    assert line["calls"] == ok
    assert line["errors"] == 0


# --------------------------------------------------------------------------- workers


def test_workers_share_one_limit_through_redis(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    backend = Backend(
        "redis", {"state": redis_url, "governance": {"prefix": redis_prefix}}, processes=1
    )
    callers = [{"name": "rpm-caller", "key": KEY_RPM, "limits": {"rpm": RPM}}]
    config = write_config(tmp_path / "gateway.yaml", backend, callers=callers)
    with fleet(config, 1, tmp_path, workers=2) as urls:
        room_in_minute(15)

        async def run() -> list[Answer]:
            # A connection per call, so the calls spread over both workers.
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as session:
                raw = body(max_tokens=5)
                return list(
                    await asyncio.gather(*(call(session, urls[0], KEY_RPM, raw) for _ in range(60)))
                )

        answers = asyncio.run(run())
    assert Counter(a.status for a in answers) == {200: RPM, 429: 60 - RPM}
