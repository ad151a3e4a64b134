"""The official openai SDK against a governed endpoint: it reads the ``x-ratelimit-*``
headers and ``Retry-After`` of a 429, and its own retry waits the time the governor gave.

The endpoint is a small aiohttp server on 127.0.0.1 that calls the governor the way the
gateway's limits stage does (admit before answering, headers on the answer, 429 from the
refusal), on a clock set just before a minute's end: the SDK's wait for a request-per-minute
window is then about a second. The gateway itself, with the same SDK, is
``test_gateway_openai_sdk.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import openai
import pytest
from aiohttp import web

from aifetch._retry_timing import parse_duration
from aifetch.gateway import GatewayError
from aifetch.gateway.governance import Governor, Usage
from tests.governance.conftest import make_config

_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "m1",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}


class Endpoint:
    def __init__(self, governor: Governor) -> None:
        self.governor = governor
        # (when, status, the wait a 429 gave in seconds)
        self.hits: list[tuple[float, int, float | None]] = []

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.read()
        fields = msgspec.json.decode(body)
        who = self.governor.caller("sdk")
        assert who is not None
        estimate = self.governor.estimate(len(body), fields.get("max_tokens"))
        try:
            admission = await self.governor.admit(who, fields["model"], estimate, stream=False)
        except GatewayError as exc:
            wait = int(dict(exc.headers)["retry-after-ms"]) / 1000
            self.hits.append((time.monotonic(), exc.status, wait))
            headers = {"content-type": "application/json", **dict(exc.headers)}
            return web.Response(status=exc.status, body=exc.body(), headers=headers)
        self.hits.append((time.monotonic(), 200, None))
        self.governor.settle(admission, Usage(5, 1))
        headers = {"content-type": "application/json"}
        headers.update((k.decode(), v.decode()) for k, v in admission.headers)
        return web.Response(body=msgspec.json.encode(_ANSWER), headers=headers)


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[str, Endpoint]]:
    config = make_config(callers=[{"name": "sdk", "key": "k", "limits": {"rpm": 1, "tpm": 5000}}])
    # 1.2 s before a UTC minute ends (moving with real time): the second call is refused
    # and the window it must wait for is about a second away.
    real = time.time()
    offset = (real // 60 + 1) * 60 - 1.2 - real
    governor = Governor(config, clock=lambda: time.time() + offset)
    await governor.start()
    ep = Endpoint(governor)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", ep.chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1", ep
    finally:
        await runner.cleanup()
        await governor.aclose()


def _ask(client: openai.AsyncOpenAI) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="m1", messages=[{"role": "user", "content": "hello"}], max_tokens=10
    )


async def test_the_sdk_reads_the_headers_and_waits_what_the_429_says(
    endpoint: tuple[str, Endpoint],
) -> None:
    base_url, ep = endpoint
    async with openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0) as strict:
        first = await _ask(strict)
        assert first.headers["x-ratelimit-limit-requests"] == "1"
        assert first.headers["x-ratelimit-remaining-requests"] == "0"
        assert int(first.headers["x-ratelimit-remaining-tokens"]) < 5000
        with pytest.raises(openai.RateLimitError) as refused:
            await _ask(strict)
    headers = refused.value.response.headers
    assert refused.value.code == "rate_limit_exceeded"
    wait = int(headers["retry-after-ms"]) / 1000
    assert 0 < wait <= 1.2
    assert headers["retry-after"] == str(math.ceil(wait))
    assert parse_duration(headers["x-ratelimit-reset-requests"]) == pytest.approx(wait, abs=0.002)

    async with openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=2) as patient:
        started = time.monotonic()
        answer = await _ask(patient)
        took = time.monotonic() - started
    assert answer.parse().choices[0].message.content == "hi"
    # One 429, then the retry the SDK made after the wait the governor gave (the SDK
    # adds no jitter to a server-given wait up to 60 s).
    assert [status for _, status, _ in ep.hits[2:]] == [429, 200]
    (refused_at, _, given), (retried_at, _, _) = ep.hits[2:]
    assert given is not None
    assert given - 0.05 <= retried_at - refused_at <= given + 0.5
    assert took < given + 1.0
