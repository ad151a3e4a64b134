"""Shared pieces for the fuzzing, secrets and hostile-input suites: hypothesis strategies,
an in-process ASGI driver, and a gateway served on loopback in front of the fake upstream."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from hypothesis import strategies as st

from aifetch.gateway import GatewayApp, GatewayConfig, create_app, parse_config
from tests.gateway.conftest import RunningGateway
from tests.support.fake_upstream import FakeUpstream

# Examples per hypothesis test: every fuzz file runs in well under 30 s at this count.
FUZZ_EXAMPLES = 200


def chunkings(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """``data`` cut into consecutive pieces at arbitrary points (empty pieces included)."""
    cuts = st.lists(st.integers(0, len(data)), max_size=16).map(sorted)
    return cuts.map(
        lambda points: [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]
    )


_json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)


def json_values(depth: int = 3) -> st.SearchStrategy[Any]:
    """Any JSON value (no NaN or infinities, which JSON cannot spell), nested up to ``depth``."""
    return st.recursive(_json_leaves, _json_containers, max_leaves=4**depth)


def _json_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    )


# --- in-process ASGI ---------------------------------------------------------------------


@dataclass
class AsgiResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


@dataclass
class _Exchange:
    chunks: list[bytes]
    messages: list[MutableMapping[str, Any]] = field(default_factory=list)


async def asgi_call(
    app: GatewayApp,
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    chunks: int = 1,
) -> AsgiResponse:
    """Drive ``app`` with one HTTP request, as a server would, and collect the response.

    The body is delivered in ``chunks`` ASGI messages; once it is all delivered ``receive``
    waits, as a connection whose caller is still there does.
    """
    size = max(1, -(-len(body) // max(1, chunks)))
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    exchange = _Exchange(pieces)
    waiting = asyncio.Event()

    async def receive() -> MutableMapping[str, Any]:
        if exchange.chunks:
            piece = exchange.chunks.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(exchange.chunks)}
        await waiting.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        exchange.messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *(headers or [])],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    await asyncio.wait_for(app(scope, receive, send), 10)
    waiting.set()
    starts = [m for m in exchange.messages if m["type"] == "http.response.start"]
    assert len(starts) == 1, exchange.messages
    body_out = b"".join(
        m.get("body", b"") for m in exchange.messages if m["type"] == "http.response.body"
    )
    return AsgiResponse(starts[0]["status"], list(starts[0]["headers"]), body_out)


def assert_openai_error(data: bytes, status: int) -> dict[str, Any]:
    """``data`` is an OpenAI error envelope for a client error; returns its ``error``."""
    assert 400 <= status < 500, (status, data[:300])
    error = msgspec.json.decode(data)["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert "Traceback" not in error["message"]
    return error  # type: ignore[no-any-return]


# --- a gateway in front of the fake upstream, on loopback --------------------------------


def gateway_config(
    upstream_url: str, api_key: str, *, dead_url: str | None = None, **sections: Any
) -> GatewayConfig:
    """Model ``gpt`` (→ the fake upstream as ``fake-model``, one attempt), ``mock-gpt`` (the
    built-in mock) and ``private`` (→ the fake upstream, no caller may use it unless the
    caller's list names it); with ``dead_url``, model ``dead`` (→ that URL, same key);
    ``sections`` replace top-level keys."""
    raw: dict[str, Any] = {
        "upstreams": {
            "mock": {"kind": "mock"},
            "fake": {
                "kind": "openai",
                "base_url": upstream_url + "/v1",
                "api_key": api_key,
                "timeout": {"connect": 2, "first_byte": 5, "idle": 5},
            },
        },
        "models": {
            "gpt": {
                "targets": [{"upstream": "fake", "model": "fake-model"}],
                "retry": {"attempts": 1},
            },
            "private": {"targets": [{"upstream": "fake"}], "retry": {"attempts": 1}},
            "mock-gpt": {"targets": [{"upstream": "mock"}]},
        },
        "server": {"heartbeat": 0, "shutdown_grace": 2},
    }
    if dead_url is not None:
        raw["upstreams"]["dead"] = {**raw["upstreams"]["fake"], "base_url": dead_url + "/v1"}
        raw["models"]["dead"] = {"targets": [{"upstream": "dead"}], "retry": {"attempts": 1}}
    raw.update(sections)
    return parse_config(raw)


@contextmanager
def running_gateway(config: GatewayConfig) -> Iterator[RunningGateway]:
    gateway = RunningGateway(config)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@contextmanager
def fake_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


def raw_exchange(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send ``request`` bytes as they are and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def app_for(config: GatewayConfig) -> GatewayApp:
    return create_app(config)


H = TypeVar("H", bound=logging.Handler)


@contextmanager
def logs_at_debug(handler: H) -> Iterator[H]:
    """``handler`` on the root logger, with the root at DEBUG, for the block."""
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
