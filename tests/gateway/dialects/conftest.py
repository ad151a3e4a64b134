"""Fixtures for the dialect tests: one fake upstream per wire format (OpenAI chat that
calls tools, Anthropic Messages, Gemini, two Responses APIs), a gateway in front of all of
them, and what it logs.

Models: ``gpt`` (openai kind), ``claude`` (anthropic kind, with a configured beta),
``gem`` (gemini kind), ``mock-gpt``, ``claude-then-gpt`` (anthropic, then openai),
``resp`` (Responses upstreams a then b), and ``claude-then-resp``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest

from aifetch.gateway import GatewayConfig, parse_config
from tests.support.fake_anthropic import AnthropicAPI
from tests.support.fake_gemini import GeminiAPI
from tests.support.fake_responses import ResponsesAPI
from tests.support.fake_tool_chat import ToolChat
from tests.support.fake_upstream import FakeUpstream

from ..conftest import RunningGateway

OPENAI_KEY = "sk-openai-upstream-key-0001"
ANTHROPIC_KEY = "sk-ant-upstream-key-0002"
GEMINI_KEY = "AIzaGeminiUpstreamKey0003"
RESPONSES_KEY = "sk-responses-upstream-key-0004"
CALLER_KEY = "gw-dialect-caller-key-0005"
OTHER_KEY = "gw-dialect-other-key-0006"
CONFIG_BETA = "config-beta-2025-01-01"
WAIT = 5.0


@dataclass
class Fakes:
    openai: FakeUpstream
    tools: ToolChat
    anthropic: FakeUpstream
    claude: AnthropicAPI
    gemini: FakeUpstream
    gem: GeminiAPI
    resp_a: FakeUpstream
    api_a: ResponsesAPI
    resp_b: FakeUpstream
    api_b: ResponsesAPI

    def reset(self) -> None:
        for up in (self.openai, self.anthropic, self.gemini, self.resp_a, self.resp_b):
            up.reset()
        for api in (self.tools, self.claude, self.gem, self.api_a, self.api_b):
            api.received.clear()
        for sent in (self.claude.sent, self.api_a.sent, self.api_b.sent):
            sent.clear()


def dialect_config(fakes: Fakes, **sections: Any) -> GatewayConfig:
    timeout = {"connect": 2, "first_byte": 5, "idle": 5}
    raw: dict[str, Any] = {
        "upstreams": {
            "oa": {"base_url": fakes.openai.url + "/v1", "api_key": OPENAI_KEY, "timeout": timeout},
            "claude": {
                "kind": "anthropic",
                "base_url": fakes.anthropic.url,
                "api_key": ANTHROPIC_KEY,
                "timeout": timeout,
            },
            "gem": {
                "kind": "gemini",
                "base_url": fakes.gemini.url + "/v1beta",
                "api_key": GEMINI_KEY,
                "timeout": timeout,
            },
            "resp-a": {"base_url": fakes.resp_a.url + "/v1", "api_key": RESPONSES_KEY},
            "resp-b": {"base_url": fakes.resp_b.url + "/v1", "api_key": RESPONSES_KEY},
            "mock": {"kind": "mock"},
        },
        "models": {
            "gpt": {"targets": [{"upstream": "oa", "model": "fake-model"}]},
            "claude": {
                "targets": [{"upstream": "claude", "model": "claude-fake-1"}],
                "anthropic_beta": [CONFIG_BETA],
                "retry": {"attempts": 2, "backoff": 0.01},
            },
            "gem": {"targets": [{"upstream": "gem", "model": "gemini-fake"}]},
            "mock-gpt": {"targets": [{"upstream": "mock"}]},
            "claude-then-gpt": {
                "targets": [
                    {"upstream": "claude", "model": "claude-fake-1"},
                    {"upstream": "oa", "model": "fake-model"},
                ],
                "retry": {"attempts": 1},
            },
            "resp": {
                "targets": [{"upstream": "resp-a"}, {"upstream": "resp-b"}],
                "retry": {"attempts": 1},
            },
            "claude-then-resp": {
                "targets": [{"upstream": "claude"}, {"upstream": "resp-a"}],
                "retry": {"attempts": 1},
            },
        },
        "callers": [
            {"name": "app", "key": CALLER_KEY},
            {"name": "other", "key": OTHER_KEY},
        ],
        "server": {"heartbeat": 0, "shutdown_grace": 2},
    }
    for key, value in sections.items():
        raw[key] = value
    return parse_config(raw)


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    tools, claude = ToolChat(), AnthropicAPI(key=ANTHROPIC_KEY)
    gem, api_a, api_b = GeminiAPI(key=GEMINI_KEY), ResponsesAPI("resp_a"), ResponsesAPI("resp_b")
    with (
        FakeUpstream(default=tools) as openai,
        FakeUpstream(default=claude) as anthropic,
        FakeUpstream(default=gem) as gemini,
        FakeUpstream(default=api_a) as resp_a,
        FakeUpstream(default=api_b) as resp_b,
    ):
        yield Fakes(openai, tools, anthropic, claude, gemini, gem, resp_a, api_a, resp_b, api_b)


class AccessLines(logging.Handler):
    """The gateway's access lines, decoded."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.cond = threading.Condition()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self.cond:
            self.lines.append(msgspec.json.decode(record.getMessage()))
            self.cond.notify_all()

    def wait(self, count: int) -> dict[str, Any]:
        """The ``count``-th line (1-based), once written."""
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.lines) >= count, WAIT):
                raise AssertionError(f"no access line #{count} within {WAIT} s")
            return self.lines[count - 1]

    def settle(self, quiet: float = 0.05) -> int:
        """The number of lines once none came for ``quiet`` seconds: a line is written
        after its answer was sent, so the last test's may still be on its way."""
        with self.cond:
            while self.cond.wait(quiet):
                pass
            return len(self.lines)

    def after(self, mark: int, count: int = 1) -> list[dict[str, Any]]:
        """The ``count`` lines written after ``mark`` (a ``settle()`` result)."""
        self.wait(mark + count)
        return self.lines[mark : mark + count]


@pytest.fixture(scope="module")
def access() -> Iterator[AccessLines]:
    logger = logging.getLogger("aifetch.gateway.access")
    handler, level = AccessLines(), logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture(scope="module")
def gateway(fakes: Fakes, access: AccessLines) -> Iterator[RunningGateway]:
    running = RunningGateway(dialect_config(fakes))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> Iterator[None]:
    if "fakes" in request.fixturenames:
        request.getfixturevalue("fakes").reset()
    if "access" in request.fixturenames:
        request.getfixturevalue("access").settle()
    return


Serve = Callable[[GatewayConfig], RunningGateway]


def tokens(gateway: RunningGateway, model: str) -> dict[str, float]:
    """The token counters ``/metrics`` shows for ``model``, by kind (all callers)."""
    text = httpx.get(gateway.url + "/metrics", timeout=WAIT).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("aifetch_gateway_tokens_total{") and f'model="{model}"' in line:
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            found[kind] = found.get(kind, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def sse_events(data: bytes) -> list[tuple[str, str]]:
    """(event name, data) of every event in ``data``, comments left out."""
    events = []
    for block in data.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, lines = "message", []
        for line in block.decode().split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                lines.append(line[5:].removeprefix(" "))
        if lines:
            events.append((name, "\n".join(lines)))
    return events
