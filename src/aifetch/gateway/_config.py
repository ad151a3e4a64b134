"""The gateway's configuration: one YAML file → typed, validated msgspec Structs.

Validation happens once, at start-up. Every message names the key path that is wrong
(``models.gpt-4o.targets[0].upstream: ...``) and says what was expected, so a typo is fixed
without reading source. ``${NAME}`` (or ``${NAME:-default}``) in any string value is
replaced from the environment, which is how secrets stay out of the file.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import msgspec
import yaml

from .._proxy import ProxyRoutes, parse_proxy
from .._tls import tls_context
from .governance._config import (
    AdminConfig,
    GovernanceConfig,
    KeysConfig,
    LimitConfig,
    PriceConfig,
    check_governance,
)

__all__ = [
    "STREAM_TRANSPORT_ENV",
    "CallerConfig",
    "ConfigError",
    "CorsConfig",
    "FilePipeConfig",
    "GatewayConfig",
    "LimitsConfig",
    "MockConfig",
    "ModelConfig",
    "PipeConfig",
    "RetryConfig",
    "ServerConfig",
    "TargetConfig",
    "TimeoutConfig",
    "UpstreamConfig",
    "default_config",
    "is_loopback_host",
    "load_config",
    "parse_config",
]


_T = TypeVar("_T")

# The stream_transport of every upstream that does not set its own: how a deployment, or a
# test run of the proof suites, tries the lean transport without editing each config.
STREAM_TRANSPORT_ENV = "AIFETCH_STREAM_TRANSPORT"
_STREAM_TRANSPORTS = ("aiohttp", "lean")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key path and the problem."""


# Every section forbids unknown keys: a misspelt key must not be silently ignored.


class TimeoutConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Seconds per phase (``null`` = no limit); see ``aifetch.Timeout``. ``pool`` is the
    wait for one of the upstream's connections (the gateway's own phase: 503
    ``upstream_busy``, not an upstream timeout)."""

    pool: float | None = 10.0
    connect: float | None = 10.0
    first_byte: float | None = 120.0
    idle: float | None = 120.0
    total: float | None = None


class MockConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The built-in ``mock`` provider's behaviour."""

    chunks: int = 8
    interval: float = 0.0
    text: str = "Hello from the aifetch mock provider. It streams deterministic chunks."


class UpstreamConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # openai: any OpenAI-compatible API; anthropic, gemini: translated (docs/DIALECTS.md);
    # mock: the built-in offline provider.
    kind: Literal["openai", "anthropic", "gemini", "mock"] = "openai"
    # Required for openai; anthropic and gemini default to the provider's own.
    base_url: str | None = None
    api_key: str | None = None
    headers: dict[str, str] = {}
    timeout: TimeoutConfig = TimeoutConfig()
    max_connections: int = 100
    # At most this many of them for one caller at once (default: all with one caller,
    # half with several, so one caller's long streams cannot starve the others).
    max_connections_per_caller: int | None = None
    mock: MockConfig = MockConfig()
    # The anthropic-version header sent to an anthropic upstream.
    anthropic_version: str = "2023-06-01"
    # The client's network settings (aifetch.AsyncClient's proxy, trust_env, verify, cert):
    # an HTTP proxy URL; whether HTTP(S)_PROXY/NO_PROXY apply; True, False or a CA bundle
    # path; a client certificate, one PEM path or [certificate, key].
    proxy: str | None = None
    trust_env: bool = False
    verify: bool | str = True
    cert: str | list[str] | None = None
    # The client of this upstream's streaming calls: aiohttp's (the default) or the lean
    # transport (experimental: bench/README.md, "A leaner upstream stream path").
    stream_transport: Literal["aiohttp", "lean"] | None = None


class TargetConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    upstream: str
    # The model name the upstream knows; defaults to the public name.
    model: str | None = None


class RetryConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Attempts per target before moving to the next fallback target."""

    attempts: int = 2
    backoff: float = 0.25
    cap: float = 4.0
    # A server-given Retry-After longer than this is not waited for: the next target is
    # tried instead (or the 429 passed on).
    max_server_wait: float = 10.0


class ModelConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    targets: list[TargetConfig]
    retry: RetryConfig = RetryConfig()
    # On caller disconnect: cancel the upstream call at once, or read it to the end so
    # that its usage is recorded.
    on_disconnect: Literal["cancel", "drain"] = "cancel"
    # USD per million tokens, for budgets and the ledger's cost column.
    price: PriceConfig | None = None
    # The output limit sent to an upstream that requires one (anthropic) when the caller
    # gives none; without it, 4096.
    default_max_tokens: int | None = None
    # anthropic-beta values sent with this model's calls to anthropic upstreams.
    anthropic_beta: list[str] = []


class CallerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    name: str
    key: str
    # Public model names this caller may use; ``["*"]`` for all.
    models: list[str] = msgspec.field(default_factory=lambda: ["*"])
    limits: LimitConfig | None = None
    # Public model name → limits for this caller on that model (on top of ``limits``).
    model_limits: dict[str, LimitConfig] = {}


# What the official OpenAI and Anthropic SDKs send from a browser, besides the key.
DEFAULT_CORS_HEADERS = (
    "authorization",
    "content-type",
    "api-key",
    "x-api-key",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "idempotency-key",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "x-stainless-*",
)


class CorsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    allow_origins: list[str] = []
    # Names, "prefix-*" patterns, or "*" for any header.
    allow_headers: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_CORS_HEADERS))
    max_age: int = 600


class LimitsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    max_body_bytes: int = 4 * 1024 * 1024
    # All request bodies held at once (each is held until its call ends): past it, 503.
    max_buffered_body_bytes: int = 256 * 1024 * 1024
    # Seconds a caller has to send a whole request (head and body): from the accept for a
    # connection's first request, from its first bytes for a later one; then 408 and the
    # connection is closed. (Slow callers hold a connection and a task each; uvicorn
    # bounds only idle keep-alive connections.)
    request_timeout: float = 30.0
    # Open caller connections per process; lowered to fit the file-descriptor limit.
    # Past it the longest-idle connection is closed to make room (see _protocol.py).
    max_connections: int = 4096


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8000
    # ``: ping`` comment interval while waiting and between chunks; 0 disables.
    heartbeat: float = 15.0
    # Graceful shutdown: in-flight streams get this long, then end with an error event.
    shutdown_grace: float = 20.0
    access_log: bool = True
    # A bearer key for GET /metrics. Without one, /metrics answers clients on this machine
    # only, and never a request that came through a proxy.
    metrics_key: str | None = None
    # GET /playground: a page to try the models from a browser (GET /aifetch.js is always on).
    playground: bool = True


class PipeConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # ``module:attr``. With ``options``, attr is a factory called as ``attr(**options)``.
    use: str
    options: dict[str, Any] | None = None


class FilePipeConfig(PipeConfig, frozen=True, kw_only=True):
    """A pipe entry read from a config file. ``folder`` is that file's folder, where
    ``use`` may find its module; ``load_config`` sets it, the YAML cannot (entries are
    decoded as ``PipeConfig``, which has no such key)."""

    folder: str


class GatewayConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    upstreams: dict[str, UpstreamConfig]
    models: dict[str, ModelConfig]
    callers: list[CallerConfig] = []
    cors: CorsConfig = CorsConfig()
    limits: LimitsConfig = LimitsConfig()
    server: ServerConfig = ServerConfig()
    pipes: list[PipeConfig] = []
    # Governance (docs/GATEWAY.md, "Keys, limits, budgets and the ledger").
    state: str = "memory"
    on_state_error: Literal["open", "closed"] = "open"
    ledger: str | None = None
    admin: AdminConfig | None = None
    keys: KeysConfig | None = None
    governance: GovernanceConfig = GovernanceConfig()


def default_config() -> GatewayConfig:
    """What ``aifetch serve`` runs with no config: one ``mock-gpt`` model, no callers."""
    return GatewayConfig(
        upstreams={"mock": UpstreamConfig(kind="mock")},
        models={"mock-gpt": ModelConfig(targets=[TargetConfig(upstream="mock")])},
    )


def load_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Read, interpolate and validate a YAML config file; raises ``ConfigError``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {os.fspath(path)!r}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{os.fspath(path)}: not valid YAML: {exc}") from None
    except RecursionError:
        # PyYAML's composer recurses per nesting level; no real config nests this deep.
        raise ConfigError(f"{os.fspath(path)}: YAML nested too deeply") from None
    config = parse_config(raw, env)
    if not config.pipes:
        return config
    # ``use: myapp.pipes:...`` next to the config file loads from there (see _pipes.py).
    folder = str(Path(path).resolve().parent)
    pipes = [FilePipeConfig(use=p.use, options=p.options, folder=folder) for p in config.pipes]
    return msgspec.structs.replace(config, pipes=pipes)


def parse_config(raw: Any, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Validate an already-parsed mapping (as ``yaml.safe_load`` returns it)."""
    if not isinstance(raw, dict):
        raise ConfigError("config: expected a mapping at the top level")
    try:
        data = _interpolate(raw, os.environ if env is None else env, "")
    except RecursionError:
        raise ConfigError("config: nested too deeply") from None
    # msgspec reports a mapping's entries as ``[...]``; converting the named entries one by
    # one first lets the message name the upstream or model that is wrong.
    for section, kind in (("upstreams", UpstreamConfig), ("models", ModelConfig)):
        entries = data.get(section)
        if isinstance(entries, dict):
            for name, entry in entries.items():
                _convert(entry, kind, f"{section}.{name}")
    config = _convert(data, GatewayConfig, "")
    config = _default_stream_transport(config, os.environ if env is None else env)
    _check(config)
    return config


def _default_stream_transport(config: GatewayConfig, env: Mapping[str, str]) -> GatewayConfig:
    """``STREAM_TRANSPORT_ENV`` as the ``stream_transport`` of the upstreams without one."""
    value = env.get(STREAM_TRANSPORT_ENV)
    if not value:
        return config
    if value not in _STREAM_TRANSPORTS:
        raise ConfigError(
            f"{STREAM_TRANSPORT_ENV}: expected one of {', '.join(_STREAM_TRANSPORTS)}, "
            f"got {value!r}"
        )
    upstreams = {
        name: upstream
        if upstream.stream_transport is not None
        else msgspec.structs.replace(upstream, stream_transport=value)
        for name, upstream in config.upstreams.items()
    }
    return msgspec.structs.replace(config, upstreams=upstreams)


def _convert(data: Any, kind: type[_T], prefix: str) -> _T:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise ConfigError(_msgspec_message(str(exc), prefix)) from None


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, env: Mapping[str, str], path: str) -> Any:
    if isinstance(value, str):
        return _substitute(value, env, path)
    if isinstance(value, dict):
        return {k: _interpolate(v, env, _join(path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _substitute(text: str, env: Mapping[str, str], path: str) -> str:
    if "${" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        # The message names the variable, never a value.
        raise ConfigError(f"{path or 'config'}: environment variable {name} is not set")

    return _ENV_REF.sub(replace, text)


def _join(path: str, key: str) -> str:
    # A key that is empty, padded or has control characters would make the path in an
    # error message read as nothing at all, and one with ": " would end the path early:
    # show those quoted.
    plain = key and key.isprintable() and key.strip() == key and ":" not in key
    shown = key if plain else repr(key)
    return f"{path}.{shown}" if path else shown


_MSGSPEC_PATH = re.compile(r" - at `\$(.*)`$")


def _msgspec_message(text: str, prefix: str) -> str:
    """``Expected `int`, got `str` - at `$.server.port``` → ``server.port: Expected ...``."""
    match = _MSGSPEC_PATH.search(text)
    if not match:
        return f"{prefix or 'config'}: {text}"
    path = (prefix + match.group(1)).lstrip(".") or "config"
    return f"{path}: {text[: match.start()]}"


def _check(config: GatewayConfig) -> None:
    """Cross-field rules msgspec cannot express."""
    if not config.models:
        raise ConfigError("models: at least one model is required")
    for name, upstream in config.upstreams.items():
        _check_upstream(f"upstreams.{name}", upstream)
    for name, model in config.models.items():
        _check_model(f"models.{name}", model, config.upstreams)
    seen_keys: set[str] = set()
    for i, caller in enumerate(config.callers):
        path = f"callers[{i}]"
        if not caller.key:
            raise ConfigError(f"{path}.key: must not be empty")
        if caller.key in seen_keys:
            raise ConfigError(f"{path}.key: the same key is given to two callers")
        seen_keys.add(caller.key)
        for j, model_name in enumerate(caller.models):
            if model_name != "*" and model_name not in config.models:
                raise ConfigError(f"{path}.models[{j}]: unknown model {model_name!r}")
    _positive("limits.max_body_bytes", config.limits.max_body_bytes)
    if config.limits.max_buffered_body_bytes < config.limits.max_body_bytes:
        raise ConfigError("limits.max_buffered_body_bytes: must be at least limits.max_body_bytes")
    _positive("limits.max_connections", config.limits.max_connections)
    if not config.limits.request_timeout > 0:  # (NaN fails this too)
        raise ConfigError("limits.request_timeout: must be a positive number of seconds")
    if not 0 <= config.server.port <= 65535:
        raise ConfigError("server.port: must be between 0 and 65535")
    if config.server.heartbeat < 0 or config.server.shutdown_grace < 0:
        raise ConfigError("server: heartbeat and shutdown_grace must not be negative")
    for i, pipe in enumerate(config.pipes):
        if pipe.use.count(":") != 1 or not all(pipe.use.split(":")):
            raise ConfigError(f"pipes[{i}].use: expected 'module:attr', got {pipe.use!r}")
    check_governance(config)


def _check_upstream(path: str, upstream: UpstreamConfig) -> None:
    if upstream.kind == "openai" and not upstream.base_url:
        raise ConfigError(f"{path}.base_url: required for kind 'openai'")
    if upstream.kind != "mock" and upstream.base_url is not None:
        parts = urlsplit(upstream.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{path}.base_url: expected an http(s) URL with a host")
        if parts.username or parts.password:
            raise ConfigError(f"{path}.base_url: put credentials in api_key, not in the URL")
    version = upstream.anthropic_version
    if not version or not version.isprintable() or version.strip() != version:
        raise ConfigError(f"{path}.anthropic_version: expected a version such as 2023-06-01")
    _positive(f"{path}.max_connections", upstream.max_connections)
    share = upstream.max_connections_per_caller
    if share is not None and not 1 <= share <= upstream.max_connections:
        raise ConfigError(
            f"{path}.max_connections_per_caller: must be between 1 and max_connections"
        )
    _positive(f"{path}.mock.chunks", upstream.mock.chunks)
    _check_network(path, upstream)
    for phase in ("pool", "connect", "first_byte", "idle", "total"):
        value = getattr(upstream.timeout, phase)
        if value is not None and value <= 0:
            raise ConfigError(f"{path}.timeout.{phase}: must be positive or null")


def client_cert(upstream: UpstreamConfig) -> str | tuple[str, str] | None:
    """``cert`` as the client takes it (a path, or a (certificate, key) pair)."""
    cert = upstream.cert
    return (cert[0], cert[1]) if isinstance(cert, list) else cert


def _check_network(path: str, upstream: UpstreamConfig) -> None:
    """The proxy URL, the environment's proxies and the TLS files, tried now: a typo is a
    start-up error naming the key, never a failed call later. No message quotes the
    proxy's credentials."""
    if isinstance(upstream.cert, list) and len(upstream.cert) != 2:
        raise ConfigError(f"{path}.cert: expected a PEM path, or [certificate, key]")
    if upstream.trust_env:
        try:
            ProxyRoutes(None, trust_env=True)
        except ValueError as exc:
            raise ConfigError(f"{path}.trust_env: {exc}") from None
    if upstream.proxy is not None:
        try:
            parse_proxy(upstream.proxy, f"{path}.proxy")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    try:
        tls_context(upstream.verify, client_cert(upstream), trust_env=upstream.trust_env)
    except ValueError as exc:
        raise ConfigError(f"{path}.{exc}") from None


def _check_model(path: str, model: ModelConfig, upstreams: dict[str, UpstreamConfig]) -> None:
    if not model.targets:
        raise ConfigError(f"{path}.targets: at least one target is required")
    for i, target in enumerate(model.targets):
        if target.upstream not in upstreams:
            known = ", ".join(sorted(upstreams)) or "none"
            raise ConfigError(
                f"{path}.targets[{i}].upstream: unknown upstream {target.upstream!r}"
                f" (known: {known})"
            )
    _positive(f"{path}.retry.attempts", model.retry.attempts)
    if model.default_max_tokens is not None:
        _positive(f"{path}.default_max_tokens", model.default_max_tokens)
    for i, beta in enumerate(model.anthropic_beta):
        if not beta or "," in beta or not beta.isprintable():
            raise ConfigError(f"{path}.anthropic_beta[{i}]: expected one beta name, got {beta!r}")


def _positive(path: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{path}: must be at least 1")


def is_loopback_host(host: str) -> bool:
    """True for hosts that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
