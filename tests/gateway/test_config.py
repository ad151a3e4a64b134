"""Config validation: every message names the key path and what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aifetch.gateway import ConfigError, default_config, load_config, parse_config


def base(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "upstreams": {
            "openai": {"base_url": "https://api.openai.com/v1", "api_key": "${OPENAI_API_KEY}"}
        },
        "models": {"gpt-4o": {"targets": [{"upstream": "openai"}]}},
    }
    raw.update(changes)
    return raw


ENV = {"OPENAI_API_KEY": "sk-from-env"}


def test_env_interpolation_fills_secrets() -> None:
    config = parse_config(base(), ENV)
    assert config.upstreams["openai"].api_key == "sk-from-env"


def test_env_default_and_missing_variable() -> None:
    raw = base()
    raw["upstreams"]["openai"]["api_key"] = "${NOT_SET_ANYWHERE:-fallback}"
    assert parse_config(raw, {}).upstreams["openai"].api_key == "fallback"
    with pytest.raises(ConfigError) as info:
        parse_config(base(), {})
    assert (
        str(info.value)
        == "upstreams.openai.api_key: environment variable OPENAI_API_KEY is not set"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (base(server={"port": "eighty"}), "server.port: Expected `int`, got `str`"),
        (base(server={"prot": 80}), "server: Object contains unknown field `prot`"),
        (
            base(models={"m": {"targets": [{"upstream": "nope"}]}}),
            "models.m.targets[0].upstream: unknown upstream 'nope' (known: openai)",
        ),
        (base(models={"m": {"targets": []}}), "models.m.targets: at least one target is required"),
        (
            base(upstreams={"x": {"kind": "openai"}}),
            "upstreams.x.base_url: required for kind 'openai'",
        ),
        (
            base(upstreams={"x": {"base_url": "ftp://host"}}),
            "upstreams.x.base_url: expected an http(s) URL with a host",
        ),
        (
            base(upstreams={"x": {"base_url": "https://u:p@host"}}),
            "upstreams.x.base_url: put credentials in api_key, not in the URL",
        ),
        (base(upstreams={"x": {"kind": "grpc"}}), "upstreams.x.kind: Invalid enum value 'grpc'"),
        (
            base(callers=[{"name": "a", "key": "k1", "models": ["gpt-5"]}]),
            "callers[0].models[0]: unknown model 'gpt-5'",
        ),
        (
            base(callers=[{"name": "a", "key": "same"}, {"name": "b", "key": "same"}]),
            "callers[1].key: the same key is given to two callers",
        ),
        (base(pipes=[{"use": "no_colon"}]), "pipes[0].use: expected 'module:attr', got 'no_colon'"),
        (base(models={}), "models: at least one model is required"),
        (
            base(limits={"request_timeout": 0}),
            "limits.request_timeout: must be a positive number of seconds",
        ),
        (
            base(limits={"request_timeout": float("nan")}),
            "limits.request_timeout: must be a positive number of seconds",
        ),
    ],
)
def test_invalid_configs_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, ENV)
    assert str(info.value).startswith(message)


def test_duplicate_key_message_does_not_show_the_key() -> None:
    raw = base(callers=[{"name": "a", "key": "secret-k"}, {"name": "b", "key": "secret-k"}])
    with pytest.raises(ConfigError) as info:
        parse_config(raw, ENV)
    assert "secret-k" not in str(info.value)


def test_load_config_reads_yaml(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(
        "upstreams:\n  mock: {kind: mock, mock: {chunks: 3}}\n"
        "models:\n  m:\n    targets: [{upstream: mock}]\n    on_disconnect: drain\n"
    )
    config = load_config(path)
    assert config.upstreams["mock"].mock.chunks == 3
    assert config.models["m"].on_disconnect == "drain"


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstreams: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(listed)


def test_example_config_is_valid() -> None:
    example = Path(__file__).parents[2] / "examples" / "gateway.yaml"
    env = {
        "OPENAI_API_KEY": "x",
        "DEEPSEEK_API_KEY": "y",
        "GATEWAY_KEY_WEBAPP": "z",
        "GATEWAY_KEY_BATCH": "w",
        "ANTHROPIC_API_KEY": "a",
        "GEMINI_API_KEY": "g",
    }
    config = load_config(example, env)
    assert config.models


def test_default_config_serves_mock_without_callers() -> None:
    config = default_config()
    assert list(config.models) == ["mock-gpt"]
    assert config.upstreams["mock"].kind == "mock"
    assert config.callers == []
    assert config.server.host == "127.0.0.1"


@pytest.mark.parametrize("key", [" ", "\n", "", "a\tb"])
def test_env_error_names_an_invisible_key_visibly(key: str) -> None:
    # Found by the config fuzzer: a whitespace key made the key path in the message vanish.
    with pytest.raises(ConfigError) as info:
        parse_config({key: "${NOT_SET_ANYWHERE}"}, env={})
    message = str(info.value)
    assert message.startswith(repr(key) + ":"), message
    assert "NOT_SET_ANYWHERE" in message
