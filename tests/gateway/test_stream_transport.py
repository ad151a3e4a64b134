"""``upstreams.<name>.stream_transport``: an upstream's streaming calls on the lean
transport, its other calls on aiohttp's; ``AIFETCH_STREAM_TRANSPORT`` as the default of the
upstreams that do not set it. What the caller and the upstream see is the same either way.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aifetch.gateway import ConfigError, parse_config
from aifetch.gateway._config import STREAM_TRANSPORT_ENV
from tests.gateway.conftest import RunningGateway, config_for
from tests.support.fake_upstream import FakeUpstream

CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}


def _raw(transport: str | None) -> dict[str, Any]:
    upstream: dict[str, Any] = {"base_url": "http://127.0.0.1:9/v1"}
    if transport is not None:
        upstream["stream_transport"] = transport
    return {"upstreams": {"up": upstream}, "models": {"gpt": {"targets": [{"upstream": "up"}]}}}


@pytest.fixture(autouse=True)
def no_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the variable itself (a run of the suite may have set it for all)."""
    monkeypatch.delenv(STREAM_TRANSPORT_ENV, raising=False)


def test_stream_transport_is_aiohttp_unless_set() -> None:
    assert parse_config(_raw(None)).upstreams["up"].stream_transport is None
    assert parse_config(_raw("lean")).upstreams["up"].stream_transport == "lean"
    with pytest.raises(ConfigError, match=r"upstreams\.up"):
        parse_config(_raw("httpx"))


def test_the_environment_sets_the_default_and_a_config_value_wins() -> None:
    env = {STREAM_TRANSPORT_ENV: "lean"}
    assert parse_config(_raw(None), env).upstreams["up"].stream_transport == "lean"
    assert parse_config(_raw("aiohttp"), env).upstreams["up"].stream_transport == "aiohttp"
    with pytest.raises(ConfigError, match=f"{STREAM_TRANSPORT_ENV}: expected one of"):
        parse_config(_raw(None), {STREAM_TRANSPORT_ENV: "fast"})


def _stream(gateway: RunningGateway) -> bytes:
    with httpx.stream(
        "POST", gateway.url + "/v1/chat/completions", json={**CHAT, "stream": True}, timeout=10
    ) as resp:
        assert resp.status_code == 200
        return resp.read()


def _plain(gateway: RunningGateway) -> bytes:
    resp = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, timeout=10)
    assert resp.status_code == 200
    return resp.content


def _seen(request: Any) -> list[tuple[str, str]]:
    """What the upstream received, but the Host (its port differs per gateway)."""
    return sorted((n.lower(), v) for n, v in request.headers if n.lower() != "host")


def test_streams_take_the_lean_transport_and_answer_the_same(
    fake: FakeUpstream, serve: Any
) -> None:
    aiohttp_only = serve(config_for(fake.url))
    expected = (_plain(aiohttp_only), _stream(aiohttp_only))
    assert fake.connections_opened == 1  # one pooled connection served both calls
    on_aiohttp = fake.requests[-1]

    fake.reset()
    opened = fake.connections_opened
    config = config_for(fake.url, upstreams={"fake": {**_fake(fake), "stream_transport": "lean"}})
    lean = serve(config)
    assert (_plain(lean), _stream(lean)) == expected
    assert _stream(lean) == expected[1]
    # The streams have a client and a connection of their own, reused by the next stream.
    assert fake.connections_opened == opened + 2
    on_lean = fake.requests[-1]
    assert on_lean.body == on_aiohttp.body
    assert _seen(on_lean) == _seen(on_aiohttp)


def _fake(fake: FakeUpstream) -> dict[str, Any]:
    return {
        "kind": "openai",
        "base_url": fake.url + "/v1",
        "api_key": "sk-upstream-secret-1234",
        "timeout": {"connect": 2, "first_byte": 5, "idle": 5},
    }
