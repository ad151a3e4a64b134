"""Fuzzing the gateway's edges: request bodies on every model route, driven in-process
through the ASGI app, and config documents through the YAML loader.

Whatever arrives, the answer is a success from the built-in mock upstream or a 4xx with an
OpenAI-shaped error body: never a 500, never a traceback in a body or a log, never an
exception out of the app. Configs load or raise ``ConfigError`` naming what is wrong.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aifetch.gateway import ConfigError, GatewayApp, GatewayConfig, load_config, parse_config

from ._inputs_support import (
    FUZZ_EXAMPLES,
    AsgiResponse,
    asgi_call,
    assert_openai_error,
    json_values,
    logs_at_debug,
)

FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]

_CONFIG = {
    "upstreams": {"mock": {"kind": "mock", "mock": {"chunks": 3}}},
    "models": {"mock-gpt": {"targets": [{"upstream": "mock"}]}},
    "server": {"heartbeat": 0},
}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _check(response: AsgiResponse) -> None:
    if response.status == 200:
        ctype = dict(response.headers)[b"content-type"]
        if ctype.startswith(b"text/event-stream"):
            assert response.body.endswith(b"data: [DONE]\n\n")
        else:
            assert isinstance(response.json(), dict)
        return
    assert_openai_error(response.body, response.status)


def _fuzz_app(test: Callable[[Callable[..., AsgiResponse]], None]) -> list[logging.LogRecord]:
    """Run ``test`` with a ``call(method, path, body)`` bound to one app and event loop;
    return every log record the app wrote meanwhile."""
    with asyncio.Runner() as runner, logs_at_debug(_Records()) as logs:
        app: GatewayApp = runner.run(_build(parse_config(_CONFIG)))

        def call(method: str, path: str, body: bytes, **kw: Any) -> AsgiResponse:
            return runner.run(asgi_call(app, method, path, body, **kw))

        try:
            test(call)
        finally:
            runner.run(app.aclose())
    return logs.records


async def _build(config: GatewayConfig) -> GatewayApp:
    return GatewayApp(config)


def _no_trouble_logged(records: list[logging.LogRecord]) -> None:
    bad = [r for r in records if r.levelno >= logging.WARNING or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


# --- request bodies ------------------------------------------------------------------------

_models = st.one_of(
    st.sampled_from(["mock-gpt", "mock-gpt", "gpt-4o", "", "../mock-gpt"]), json_values(1)
)
_numbers = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=4), st.none()
)
_ROLES = ["system", "developer", "user", "assistant", "tool", "function"]
_messages = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "role": st.one_of(st.sampled_from(_ROLES), json_values(0)),
            "content": json_values(1),
        },
    ),
    max_size=3,
)
_malformed = st.fixed_dictionaries(
    {},
    optional={
        "model": _models,
        "stream": st.one_of(st.booleans(), json_values(1)),
        "stream_options": st.one_of(
            st.fixed_dictionaries({}, optional={"include_usage": json_values(1)}), json_values(1)
        ),
        "messages": st.one_of(_messages, json_values(1)),
        "max_tokens": _numbers,
        "n": _numbers,
        "prompt": json_values(1),
        "input": json_values(1),
        "extra": json_values(3),
    },
)
# What OpenAI (and so the mock) accepts on every route, with any extra field beside it.
_accepted = st.fixed_dictionaries(
    {
        "model": st.just("mock-gpt"),
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(_ROLES), "content": st.text(max_size=8)}
            ),
            min_size=1,
            max_size=3,
        ),
        "prompt": st.text(max_size=8),
        "input": st.text(max_size=8),
    },
    optional={"stream": st.booleans(), "max_tokens": st.integers(1, 64), "extra": json_values(2)},
)
_request_shapes = st.one_of(_malformed, _accepted)


def test_any_json_value_as_a_body_is_a_clear_client_error() -> None:
    def run(call: Callable[..., AsgiResponse]) -> None:
        @FUZZ
        @given(json_values(3), st.sampled_from(ROUTES), st.integers(1, 3))
        def case(value: Any, route: str, chunks: int) -> None:
            body = json.dumps(value).encode()
            _check(call("POST", route, body, chunks=chunks))

        case()

    _no_trouble_logged(_fuzz_app(run))


def test_request_shaped_bodies_succeed_or_are_clear_client_errors() -> None:
    seen: set[int] = set()

    def run(call: Callable[..., AsgiResponse]) -> None:
        @FUZZ
        @given(_request_shapes, st.sampled_from(ROUTES))
        def case(value: dict[str, Any], route: str) -> None:
            response = call("POST", route, json.dumps(value).encode())
            seen.add(response.status)
            _check(response)

        case()

    _no_trouble_logged(_fuzz_app(run))
    # The generator reaches both sides: bodies the mock answers and bodies refused.
    assert 200 in seen, seen
    assert any(400 <= s < 500 for s in seen), seen


def test_arbitrary_bytes_as_a_body_are_a_clear_client_error() -> None:
    prefix = b'{"model": "mock-gpt", "messages": [{"role": "user", "content": "'

    def run(call: Callable[..., AsgiResponse]) -> None:
        @FUZZ
        @given(st.binary(max_size=200), st.booleans(), st.sampled_from(ROUTES))
        def case(data: bytes, inside: bool, route: str) -> None:
            # Inside a string of an otherwise valid body, or the whole body.
            body = prefix + data + b'"}]}' if inside else data
            response = call("POST", route, body)
            if response.status == 200:
                # Only a body that is valid UTF-8 JSON may be passed on (RFC 8259 §8.1).
                json.loads(body.decode("utf-8"))
            _check(response)

        case()

    _no_trouble_logged(_fuzz_app(run))


def test_invalid_utf8_bodies_are_refused() -> None:
    bodies = [
        b'{"model": "mock-gpt\xff", "messages": []}',
        b'{"model": "mock-gpt", "messages": [{"role": "user", "content": "\xc3\x28"}]}',
        b'{"model": "mock-gpt", "x\xed\xa0\x80": 1}',  # an encoded surrogate is not UTF-8
        b"\xfe\xff\x00{",
    ]

    def run(call: Callable[..., AsgiResponse]) -> None:
        for route in ROUTES:
            for body in bodies:
                response = call("POST", route, body)
                error = assert_openai_error(response.body, response.status)
                assert response.status == 400, (route, body, error)

    _no_trouble_logged(_fuzz_app(run))


def test_deep_nesting_is_a_clear_400() -> None:
    def run(call: Callable[..., AsgiResponse]) -> None:
        for depth in (1_000, 10_000, 100_000):
            for opener, closer in ((b"[", b"]"), (b'{"a":', b"}")):
                nested = opener * depth + b"1" + closer * depth
                for body in (nested, b'{"model": "mock-gpt", "x": ' + nested + b"}"):
                    response = call("POST", "/v1/chat/completions", body)
                    error = assert_openai_error(response.body, response.status)
                    assert response.status == 400, error

    _no_trouble_logged(_fuzz_app(run))


# --- config documents --------------------------------------------------------------------

_KEYS = [
    "upstreams", "models", "callers", "limits", "server", "cors", "pipes", "kind", "base_url",
    "api_key", "headers", "timeout", "connect", "targets", "upstream", "model", "retry",
    "attempts", "name", "key", "port", "heartbeat", "max_body_bytes", "mock", "chunks",
    "on_disconnect", "allow_origins", "use", "options", "bogus",
]  # fmt: skip
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.sampled_from(["mock", "openai", "http://127.0.0.1:1/v1", "m", "${NOPE}", "${X:-1}", ""]),
    st.text(max_size=8),
)


def _config_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=5), inner, max_size=4),
    )


_config_shapes = st.recursive(_scalars, _config_containers, max_leaves=30)


def _valid_base() -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(_CONFIG))
    return copy


@st.composite
def _mutated_configs(draw: st.DrawFn) -> Any:
    """A valid config with one value somewhere replaced by an arbitrary shape."""
    config = _valid_base()
    node: Any = config
    path = []
    while isinstance(node, dict) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node)))
        path.append(key)
        if not isinstance(node[key], dict):
            break
        node = node[key]
    if isinstance(node, dict):
        node[draw(st.sampled_from(_KEYS))] = draw(_config_shapes)
    return config


def _config_error_of(load: Callable[..., GatewayConfig], *args: Any) -> str | None:
    """The ConfigError message ``load(*args)`` raises, or None when the config loads."""
    try:
        load(*args)
    except ConfigError as exc:
        return str(exc)
    return None


# A key may itself hold any character (a newline too), so the match spans lines.
_PATH_FIRST = re.compile(r"^[^\s:].*?: \S", re.DOTALL)


def _config_outcome(raw: Any) -> None:
    try:
        config = parse_config(raw, env={"X": "1"})
    except ConfigError as exc:
        message = str(exc)
        # "upstreams.mock.kind: Expected ..." — a key path (or "config") then the problem.
        assert _PATH_FIRST.match(message), message
        assert "Traceback" not in message
        return
    assert isinstance(config, GatewayConfig)


@FUZZ
@given(_config_shapes)
def test_any_config_shape_loads_or_names_the_problem(raw: Any) -> None:
    _config_outcome(raw)


@FUZZ
@given(_mutated_configs())
def test_near_valid_configs_load_or_name_the_key(raw: Any) -> None:
    _config_outcome(raw)


@FUZZ
@given(st.one_of(_config_shapes, _mutated_configs()) | st.text(max_size=80))
def test_any_yaml_document_loads_or_is_a_config_error(tmp_path_factory: Any, doc: Any) -> None:
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
    path = Path(tmp_path_factory.mktemp("cfg")) / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    message = _config_error_of(load_config, path, {})
    assert message is None or (message and "Traceback" not in message)


def test_yaml_tricks_are_config_errors(tmp_path: Path) -> None:
    tricks = {
        "python tag": "upstreams: !!python/object/apply:os.system ['true']\n",
        "alias bomb": "a: &a [x, x, x]\nb: &b [*a, *a, *a]\nupstreams: *b\nmodels: {}\n",
        "tab indent": "upstreams:\n\tmock: {}\n",
        "bytes": "upstreams: !!binary aGVsbG8=\nmodels: {}\n",
        "duplicate": "upstreams: {}\nupstreams: {}\nmodels: 1\n",
        "not a mapping": "- just\n- a list\n",
        "deep": "a: " + "[" * 5000 + "]" * 5000 + "\n",
    }
    for name, text in tricks.items():
        path = tmp_path / f"{name.replace(' ', '_')}.yaml"
        path.write_text(text, encoding="utf-8")
        assert _config_error_of(load_config, path, {}), name


def test_config_errors_name_the_wrong_key() -> None:
    cases: dict[str, dict[str, Any]] = {
        "upstreams.mock.kind": {"upstreams": {"mock": {"kind": "nope"}}},
        "server.port": {"server": {"port": "eighty"}},
        "models.mock-gpt.targets[0].upstream": {
            "models": {"mock-gpt": {"targets": [{"upstream": "missing"}]}}
        },
        "limits": {"limits": {"max_body_bytes": 1, "bogus": 2}},
    }
    for expected, change in cases.items():
        raw = _valid_base()
        for section, value in change.items():
            raw[section] = value if section != "upstreams" else {**raw[section], **value}
        message = _config_error_of(parse_config, raw)
        assert message is not None, f"{expected}: accepted"
        assert message.startswith(expected), (expected, message)
    assert msgspec.to_builtins(parse_config(_valid_base()))["models"]
