"""What each model of the browser tests' gateway does, scripted on the fake upstream.

Every scenario is a model whose upstream is the fake under its own path prefix, so one
gateway serves them all and the JS tests (tests/js/*.test.mjs) pick a behaviour by model
name. Behaviours that must start fresh per test key their state on the request's ``user``
field, which the gateway passes through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aifetch.gateway import GatewayConfig, parse_config
from tests.support.fake_behaviours import ResetMidStream
from tests.support.fake_upstream import (
    Behaviour,
    Exchange,
    FakeUpstream,
    chat_completion,
    chat_stream,
    endless_stream,
    error_event,
    respond,
    server_error,
    slow_first_byte,
    stall,
    status_storm,
)

KEY = "gw-test-key-0123456789"
NARROW_KEY = "gw-narrow-key-0123456789"
WORDS = (
    "Streams arrive a few words at a time, so a page can show the answer as it is written "
    "instead of waiting for the whole of it to be ready before anything appears on screen."
)


@dataclass
class FailFirst:
    """The first ``times`` requests for each ``user`` value get ``failure``, later ones ``then``."""

    times: int
    failure: Behaviour
    then: Behaviour
    seen: dict[str, int] = field(default_factory=dict)

    async def run(self, ex: Exchange) -> None:
        try:
            user = str(ex.request.json().get("user", ""))
        except (ValueError, AttributeError):
            user = ""
        count = self.seen[user] = self.seen.get(user, 0) + 1
        await (self.failure if count <= self.times else self.then).run(ex)


def scenarios() -> dict[str, Behaviour]:
    html = "<html><body>\n  <h1>503 Service Unavailable</h1>\n</body></html>"
    tools = [
        {"name": "get_weather", "arguments": {"city": "Paris"}},
        {"name": "get_time", "arguments": {"tz": "Europe/Paris"}},
    ]
    return {
        "words": chat_stream(content=WORDS, delay=0.04),
        "endless": endless_stream(0.05),
        "slow": slow_first_byte(10.0),
        "stall": stall(2),
        "limited": FailFirst(1, status_storm(429, retry_after="1"), chat_completion("Hello world")),
        "limited-ms": FailFirst(
            1, status_storm(429, headers={"retry-after-ms": "1200"}), chat_completion("Hello world")
        ),
        "limited-long": status_storm(
            429, retry_after="30", headers={"x-request-id": "req_fake_429"}
        ),
        "flaky": FailFirst(2, server_error(500), chat_completion("Hello world")),
        "html-error": respond(503, html, [("Content-Type", "text/html")]),
        "midstream-error": error_event(before_content=False),
        "cut": CutMidAnswer(2),
        "tools": chat_stream(tool_calls=tools),
    }


@dataclass(frozen=True, slots=True)
class CutMidAnswer(ResetMidStream):
    """The first events, then a TCP RST once the gateway has had time to read them.

    An RST at once could overtake them on a loaded machine (the kernel drops what the
    gateway had not read yet): the gateway would then see no content at all and refuse
    before its commit point, and the test expects a cut mid-answer."""

    pause: float = 0.3

    async def end(self, ex: Exchange) -> None:
        await ex.sleep(self.pause)
        ex.reset()


def install(fake: FakeUpstream) -> list[str]:
    """Route each scenario on ``fake``; the model names."""
    names = []
    for name, behaviour in scenarios().items():
        fake.route("POST", f"/{name}/v1/chat/completions", behaviour)
        names.append(name)
    return names


def gateway_config(fake: FakeUpstream, origins: list[str]) -> GatewayConfig:
    """Models ``gpt`` (the fake's default answers), ``mock-gpt`` and one per scenario; two
    callers (``KEY`` for every model, ``NARROW_KEY`` for ``gpt`` only); CORS for ``origins``."""
    timeout = {"connect": 2, "first_byte": 15, "idle": 15}
    upstreams: dict[str, Any] = {
        "mock": {"kind": "mock", "mock": {"chunks": 24, "interval": 0.03}},
        "fake": {
            "base_url": f"{fake.url}/v1",
            "api_key": "sk-upstream-secret-1234",
            "timeout": timeout,
        },
    }
    models: dict[str, Any] = {
        "mock-gpt": {"targets": [{"upstream": "mock"}]},
        "gpt": {"targets": [{"upstream": "fake", "model": "fake-model"}], "retry": {"attempts": 1}},
    }
    for name in install(fake):
        upstreams[name] = {"base_url": f"{fake.url}/{name}/v1", "timeout": timeout}
        models[name] = {"targets": [{"upstream": name}], "retry": {"attempts": 1}}
    return parse_config(
        {
            "upstreams": upstreams,
            "models": models,
            "callers": [
                {"name": "tests", "key": KEY},
                {"name": "narrow", "key": NARROW_KEY, "models": ["gpt"]},
            ],
            "cors": {"allow_origins": origins},
            "server": {"heartbeat": 0, "shutdown_grace": 1},
        }
    )
