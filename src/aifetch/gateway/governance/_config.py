"""Governance config: the sections and fields that keys, limits, state and the ledger add.

The gateway's ``_config.py`` holds these Structs in its own (``callers[].limits``,
``models.<name>.price``, ``state``, ``ledger``, ...); the cross-field rules live here in
``check_governance`` so that file only calls it. Messages name the key path, like the rest
of the config (``callers[0].limits.rpm: must be at least 1``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import msgspec

if TYPE_CHECKING:
    from .._config import GatewayConfig

__all__ = [
    "AdminConfig",
    "BudgetConfig",
    "GovernanceConfig",
    "KeysConfig",
    "LimitConfig",
    "PriceConfig",
    "check_governance",
    "check_workers",
    "governance_active",
]


class BudgetConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A spending cap in USD per UTC calendar day or month."""

    usd: float
    per: Literal["day", "month"] = "day"


class LimitConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Per caller (``callers[].limits``) or per caller and model (``model_limits``);
    ``null`` (absent) = no limit of that kind."""

    rpm: int | None = None
    tpm: int | None = None
    max_streams: int | None = None
    budget: BudgetConfig | None = None


class PriceConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """USD per million tokens. ``cached_input`` defaults to ``input``."""

    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None


class AdminConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    key: str


class KeysConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # The HMAC-SHA256 secret keys are hashed with: the table alone yields no key.
    secret: str
    # Seconds between looks for new or revoked keys in the store.
    refresh: float = 2.0


class GovernanceConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Tuning; every field has a default that suits most deployments."""

    # Redis key prefix: two deployments (or test runs) on one Redis keep apart.
    prefix: str = "aifetch:"
    # Seconds one Redis call may take before on_state_error applies.
    state_timeout: float = 0.5
    # Settlements are sent to Redis in one script call per this many seconds.
    settle_interval: float = 0.05
    # A stream slot whose call never settled (its process died) frees after this long.
    stream_lease: float = 900.0
    # Seconds a response id (which upstream made it, for whom) is kept in Redis: OpenAI
    # stores a response 30 days (2592000); a day keeps Redis small (~200 bytes an id).
    response_ids_ttl: int = 86400
    # Output tokens reserved for a call that sets no max_tokens.
    default_output_tokens: int = 1024
    # Ledger rows held in memory while the writer catches up; past it rows are dropped
    # (counted and logged), never waited for.
    ledger_buffer: int = 20000
    ledger_batch: int = 1000
    ledger_interval: float = 0.25


def governance_active(config: GatewayConfig) -> bool:
    """Whether anything needs counters: limits on a caller, or virtual keys."""
    return config.keys is not None or any(
        c.limits is not None or c.model_limits for c in config.callers
    )


def check_workers(config: GatewayConfig, workers: int) -> None:
    """Refuse ``--workers > 1`` with memory state when limits are configured: each worker
    would count on its own and every limit would silently become ``workers`` times larger."""
    if workers > 1 and config.state == "memory" and governance_active(config):
        from .._config import ConfigError

        raise ConfigError(
            f"state: memory keeps limits in one process, so --workers {workers} would let "
            f"each worker spend the full limit ({workers}x in all). Set state: "
            "redis://host:6379/0 to share them, or run one worker."
        )


def check_governance(config: GatewayConfig) -> None:
    """Cross-field rules for the governance sections; raises ``ConfigError``."""
    from .._config import ConfigError

    try:
        _check_state(config.state)
        _check_ledger(config.ledger)
        if config.keys is not None:
            _require(bool(config.keys.secret), "keys.secret: must not be empty")
            _require(config.keys.refresh > 0, "keys.refresh: must be a positive number of seconds")
            _require(
                config.ledger is not None,
                "keys: virtual keys are kept in the ledger database; set ledger: "
                "sqlite:///path/usage.db or ledger: postgresql://...",
            )
        if config.admin is not None:
            _require(bool(config.admin.key), "admin.key: must not be empty")
            _require(
                config.keys is not None,
                "admin: the admin API manages virtual keys; set keys: {secret: ...} too",
            )
        for name, model in config.models.items():
            if model.price is not None:
                _check_price(f"models.{name}.price", model.price)
        for i, caller in enumerate(config.callers):
            if caller.limits is not None:
                _check_limits(f"callers[{i}].limits", caller.limits)
            for model_name, limits in caller.model_limits.items():
                path = f"callers[{i}].model_limits.{model_name}"
                _require(model_name in config.models, f"{path}: unknown model {model_name!r}")
                _check_limits(path, limits)
        _check_tuning(config.governance)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_state(state: str) -> None:
    if state == "memory":
        return
    parts = urlsplit(state)
    _require(
        parts.scheme in ("redis", "rediss", "unix"),
        "state: expected 'memory' or a Redis URL (redis://host:6379/0, rediss://, unix://)",
    )
    _require(bool(parts.hostname or parts.path), "state: the Redis URL names no host")


def _check_ledger(ledger: str | None) -> None:
    if ledger is None:
        return
    parts = urlsplit(ledger)
    if parts.scheme == "sqlite":
        # sqlite:///relative/path or sqlite:////absolute/path (SQLAlchemy's form).
        _require(
            not parts.netloc and len(parts.path) > 1,
            "ledger: expected sqlite:///path/to/usage.db",
        )
        return
    _require(
        parts.scheme in ("postgresql", "postgres"),
        "ledger: expected sqlite:///path/to/usage.db or postgresql://user@host:5432/db",
    )


def _check_limits(path: str, limits: LimitConfig) -> None:
    for field in ("rpm", "tpm", "max_streams"):
        value = getattr(limits, field)
        _require(value is None or value >= 1, f"{path}.{field}: must be at least 1")
    if limits.budget is not None:
        usd = limits.budget.usd
        _require(math.isfinite(usd) and usd > 0, f"{path}.budget.usd: must be a positive amount")


def _check_price(path: str, price: PriceConfig) -> None:
    for field in ("input", "output", "cached_input"):
        value = getattr(price, field)
        _require(
            value is None or (math.isfinite(value) and value >= 0),
            f"{path}.{field}: must be a price of 0 or more (USD per million tokens)",
        )


def _check_tuning(tuning: GovernanceConfig) -> None:
    for field in ("state_timeout", "settle_interval", "stream_lease", "ledger_interval"):
        value = getattr(tuning, field)
        _require(value > 0, f"governance.{field}: must be a positive number of seconds")
    for field in ("default_output_tokens", "ledger_buffer", "ledger_batch", "response_ids_ttl"):
        _require(getattr(tuning, field) >= 1, f"governance.{field}: must be at least 1")
    _require(bool(tuning.prefix), "governance.prefix: must not be empty")
