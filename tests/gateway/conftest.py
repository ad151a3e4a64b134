"""Fixtures: a scripted fake upstream, and gateways served by uvicorn on 127.0.0.1:0 in a
thread (stopped at the end of each test)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aifetch.gateway import GatewayConfig, parse_config
from aifetch.gateway._server import GatewayServer, uvicorn_config
from tests.support.fake_upstream import FakeUpstream

START_TIMEOUT = 10.0


class RunningGateway:
    """A gateway served by uvicorn (uvloop + httptools) in a background thread."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.server = GatewayServer(uvicorn_config(config, host="127.0.0.1", port=0), config)
        self.thread = threading.Thread(target=self.server.run, name="gateway", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        host, port = self.server.bound_address()
        self.url = f"http://{host}:{port}"
        self.port = port

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT + self.config.server.shutdown_grace)
        assert not self.thread.is_alive(), "the gateway did not stop"


def config_for(upstream_url: str | None = None, **sections: Any) -> GatewayConfig:
    """A config with upstream ``fake`` (if a URL is given), ``mock``, and models
    ``gpt`` (→ fake) and ``mock-gpt`` (→ mock); ``sections`` replace top-level keys."""
    raw: dict[str, Any] = {
        "upstreams": {"mock": {"kind": "mock"}},
        "models": {"mock-gpt": {"targets": [{"upstream": "mock"}]}},
        "server": {"heartbeat": 0, "shutdown_grace": 2},
    }
    if upstream_url is not None:
        raw["upstreams"]["fake"] = {
            "kind": "openai",
            "base_url": upstream_url + "/v1",
            "api_key": "sk-upstream-secret-1234",
            "timeout": {"connect": 2, "first_byte": 5, "idle": 5},
        }
        raw["models"]["gpt"] = {
            "targets": [{"upstream": "fake", "model": "fake-model"}],
            "retry": {"attempts": 1},
        }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return parse_config(raw)


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def serve() -> Iterator[Callable[[GatewayConfig], RunningGateway]]:
    running: list[RunningGateway] = []

    def start(config: GatewayConfig) -> RunningGateway:
        gateway = RunningGateway(config)
        gateway.start()
        running.append(gateway)
        return gateway

    yield start
    for gateway in running:
        gateway.stop()


@pytest.fixture
def gateway(fake: FakeUpstream, serve: Callable[[GatewayConfig], RunningGateway]) -> RunningGateway:
    """A gateway in front of ``fake``, no callers."""
    return serve(config_for(fake.url))
