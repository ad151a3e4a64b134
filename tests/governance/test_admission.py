"""Admission and settlement against each state backend (memory, and real Redis with a key
prefix of the test's own)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from aifetch.gateway import GatewayError
from aifetch.gateway.governance import UNLIMITED, Estimate, Governor, Usage
from tests.governance.conftest import make_config, running


def _clock_mid_minute() -> float:
    """A clock 5 s into a UTC minute, moving with real time: a test's calls all land in
    one fixed window (tests that count a window exactly must not straddle two)."""
    real = time.time()
    base = (real // 60) * 60 + 5
    return base - real


def _config(state: dict[str, Any], **limits: Any) -> Any:
    model_limits = limits.pop("model_limits", {})
    caller = {"name": "webapp", "key": "k1", "limits": limits, "model_limits": model_limits}
    return make_config(callers=[caller], **state)


def _governor(config: Any) -> Any:
    offset = _clock_mid_minute()
    return running(config, clock=lambda: time.time() + offset)


async def test_no_limits_is_free(state: dict[str, Any]) -> None:
    config = make_config(callers=[{"name": "open", "key": "k"}], **state)
    async with running(config) as gov:
        who = gov.caller("open")
        assert who is not None
        admission = await gov.admit(who, "m1", Estimate(10, 10), stream=True)
        assert admission is UNLIMITED
        assert admission.headers == []
        gov.settle(admission, Usage(1, 1))


async def test_rpm_admits_exactly_the_limit(state: dict[str, Any]) -> None:
    async with _governor(_config(state, rpm=5)) as gov:
        who = gov.caller("webapp")
        remaining = []
        for _ in range(5):
            admission = await gov.admit(who, "m1", Estimate(1, 1), stream=False)
            remaining.append(dict(admission.headers)[b"x-ratelimit-remaining-requests"])
            gov.settle(admission, Usage(1, 1))
        assert remaining == [b"4", b"3", b"2", b"1", b"0"]
        with pytest.raises(GatewayError) as refused:
            await gov.admit(who, "m1", Estimate(1, 1), stream=False)
        assert refused.value.status == 429
        assert refused.value.code == "rate_limit_exceeded"
        headers = dict(refused.value.headers)
        assert 1 <= int(headers["retry-after"]) <= 60
        assert headers["x-ratelimit-limit-requests"] == "5"
        assert gov.metrics.refusals["r"] == 1


async def test_tokens_are_reserved_then_settled(state: dict[str, Any]) -> None:
    async with _governor(_config(state, tpm=1000)) as gov:
        who = gov.caller("webapp")
        first = await gov.admit(who, "m1", Estimate(100, 500), stream=False)
        assert dict(first.headers)[b"x-ratelimit-remaining-tokens"] == b"400"
        # 600 reserved: another 600 does not fit until the first settles.
        with pytest.raises(GatewayError) as refused:
            await gov.admit(who, "m1", Estimate(100, 500), stream=False)
        assert refused.value.type == "tokens"
        gov.settle(first, Usage(prompt_tokens=80, completion_tokens=20))  # used 100
        await gov.flush()
        second = await gov.admit(who, "m1", Estimate(100, 500), stream=False)
        assert dict(second.headers)[b"x-ratelimit-remaining-tokens"] == b"300"
        gov.settle(second, None)  # unknown usage: the reservation stands
        await gov.flush()
        with pytest.raises(GatewayError):
            await gov.admit(who, "m1", Estimate(200, 200), stream=False)
        third = await gov.admit(who, "m1", Estimate(100, 200), stream=False)
        assert dict(third.headers)[b"x-ratelimit-remaining-tokens"] == b"0"


async def test_stream_slots_free_on_settle(state: dict[str, Any]) -> None:
    async with _governor(_config(state, max_streams=2)) as gov:
        who = gov.caller("webapp")
        a = await gov.admit(who, "m1", Estimate(1, 1), stream=True)
        b = await gov.admit(who, "m1", Estimate(1, 1), stream=True)
        # Non-stream calls take no slot.
        await gov.admit(who, "m1", Estimate(1, 1), stream=False)
        with pytest.raises(GatewayError) as refused:
            await gov.admit(who, "m1", Estimate(1, 1), stream=True)
        assert "concurrent streams" in refused.value.message
        gov.settle(a, Usage(1, 1))
        gov.settle(a, Usage(1, 1))  # twice: no second slot freed
        await gov.flush()
        c = await gov.admit(who, "m1", Estimate(1, 1), stream=True)
        with pytest.raises(GatewayError):
            await gov.admit(who, "m1", Estimate(1, 1), stream=True)
        for admission in (b, c):
            gov.settle(admission, Usage(1, 1))


async def test_budget_is_insufficient_quota(state: dict[str, Any]) -> None:
    # m1 costs 1 USD per million input tokens and 2 per million output: a call reserving
    # 100k in and 100k out may cost 0.30 USD.
    async with _governor(_config(state, budget={"usd": 1.0, "per": "day"})) as gov:
        who = gov.caller("webapp")
        calls = [
            await gov.admit(who, "m1", Estimate(100_000, 100_000), stream=False) for _ in range(3)
        ]
        with pytest.raises(GatewayError) as refused:
            await gov.admit(who, "m1", Estimate(100_000, 100_000), stream=False)
        assert (refused.value.status, refused.value.code) == (429, "insufficient_quota")
        assert refused.value.type == "insufficient_quota"
        # A model without a price costs nothing against the budget.
        await gov.admit(who, "free", Estimate(100_000, 100_000), stream=False)
        # Each call used a tenth of its reservation: room comes back.
        for admission in calls:
            gov.settle(admission, Usage(10_000, 10_000))
        await gov.flush()
        await gov.admit(who, "m1", Estimate(100_000, 100_000), stream=False)
        assert gov.metrics.refusals["b"] == 1


async def test_model_limits_apply_on_top(state: dict[str, Any]) -> None:
    config = _config(state, rpm=100, model_limits={"m2": {"rpm": 2}})
    async with _governor(config) as gov:
        who = gov.caller("webapp")
        for _ in range(2):
            await gov.admit(who, "m2", Estimate(1, 1), stream=False)
        with pytest.raises(GatewayError) as refused:
            await gov.admit(who, "m2", Estimate(1, 1), stream=False)
        assert "webapp on m2" in refused.value.message
        admission = await gov.admit(who, "m1", Estimate(1, 1), stream=False)
        # The caller's scope counted all three calls.
        assert dict(admission.headers)[b"x-ratelimit-remaining-requests"] == b"97"


async def _long_calls(gov: Governor, model: str, estimate: Estimate, usage: Usage) -> int:
    who = gov.caller("webapp")
    assert who is not None

    async def call() -> bool:
        try:
            admission = await gov.admit(who, model, estimate, stream=True)
        except GatewayError:
            return False
        await asyncio.sleep(0.2)  # a long call: all 50 are in flight together
        gov.settle(admission, usage)
        return True

    results = await asyncio.gather(*(call() for _ in range(50)))
    await gov.flush()
    return sum(results)


async def test_concurrent_long_calls_cannot_pass_the_token_limit(state: dict[str, Any]) -> None:
    estimate = Estimate(200, 800)
    # Room for 10.5 calls' estimates: at most 10 in flight together.
    async with _governor(_config(state, tpm=10_500)) as gov:
        admitted = await _long_calls(gov, "m1", estimate, Usage(200, 800))
    used = admitted * estimate.tokens
    assert admitted == 10
    assert used <= 10_500 + estimate.tokens


async def test_concurrent_long_calls_cannot_pass_the_budget(state: dict[str, Any]) -> None:
    estimate = Estimate(100_000, 100_000)  # up to 0.30 USD on m1
    async with _governor(_config(state, budget={"usd": 3.1})) as gov:
        admitted = await _long_calls(gov, "m1", estimate, Usage(100_000, 100_000))
    assert admitted == 10
    assert admitted * 0.30 <= 3.1 + 0.30


async def test_refusals_reserve_nothing(state: dict[str, Any]) -> None:
    async with _governor(_config(state, rpm=1000, tpm=100)) as gov:
        who = gov.caller("webapp")
        for _ in range(5):
            with pytest.raises(GatewayError):
                await gov.admit(who, "m1", Estimate(500, 0), stream=False)
        admission = await gov.admit(who, "m1", Estimate(50, 0), stream=False)
        # The five refused calls took no request slot either.
        assert dict(admission.headers)[b"x-ratelimit-remaining-requests"] == b"999"
