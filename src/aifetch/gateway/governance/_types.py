"""The values governance passes around: who is calling, with what limits, what a call is
expected to cost, what it did cost, and the ledger row it leaves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import msgspec

from .._usage import Usage
from ._config import LimitConfig

__all__ = [
    "Estimate",
    "Identity",
    "KeyRecord",
    "LedgerRow",
    "Limits",
    "Usage",
    "UsageLine",
    "nano_usd",
]

Period = Literal["day", "month"]


def nano_usd(usd: float) -> int:
    """USD as an integer count of 1e-9 USD: counters and the ledger add integers, so a
    sum is exact in Redis, SQLite and PostgreSQL alike."""
    return round(usd * 1_000_000_000)


class Limits:
    """One scope's limits, resolved from config or a virtual key (``None`` = no limit)."""

    __slots__ = ("budget_nano", "budget_per", "max_streams", "rpm", "tpm")

    def __init__(
        self,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        max_streams: int | None = None,
        budget_usd: float | None = None,
        budget_per: Period = "day",
    ) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.max_streams = max_streams
        self.budget_nano = None if budget_usd is None else nano_usd(budget_usd)
        self.budget_per: Period = budget_per

    @classmethod
    def from_config(cls, config: LimitConfig) -> Limits:
        budget = config.budget
        return cls(
            rpm=config.rpm,
            tpm=config.tpm,
            max_streams=config.max_streams,
            budget_usd=None if budget is None else budget.usd,
            budget_per="day" if budget is None else budget.per,
        )

    @property
    def any(self) -> bool:
        return (
            self.rpm is not None
            or self.tpm is not None
            or self.max_streams is not None
            or self.budget_nano is not None
        )

    def __repr__(self) -> str:
        return (
            f"Limits(rpm={self.rpm}, tpm={self.tpm}, max_streams={self.max_streams}, "
            f"budget_nano={self.budget_nano}, per={self.budget_per})"
        )


class Identity:
    """A caller the gateway knows: a config caller (``key_name`` None) or a virtual key.

    ``name`` is what logs, metrics and the ledger's ``caller`` column show; ``scope`` keys
    the counters (config callers and virtual keys never share counters, even with one
    name). Never holds the key itself.
    """

    __slots__ = (
        "all_models",
        "expires_at",
        "key_name",
        "limited",
        "limits",
        "model_limits",
        "models",
        "name",
        "scope",
    )

    def __init__(
        self,
        name: str,
        *,
        key_name: str | None = None,
        models: Iterable[str] = ("*",),
        limits: Limits | None = None,
        model_limits: Mapping[str, Limits] | None = None,
        expires_at: float | None = None,
    ) -> None:
        self.name = name
        self.key_name = key_name
        models = frozenset(models)
        self.all_models = "*" in models
        self.models = models
        self.limits = limits if limits is not None and limits.any else None
        self.model_limits = {m: lim for m, lim in (model_limits or {}).items() if lim.any}
        self.limited = self.limits is not None or bool(self.model_limits)
        self.expires_at = expires_at
        self.scope = f"k:{key_name}" if key_name is not None else f"c:{name}"

    def may_use(self, model: str) -> bool:
        return self.all_models or model in self.models

    def __repr__(self) -> str:
        return f"Identity({self.scope!r}, limits={self.limits!r})"


class Estimate(msgspec.Struct, frozen=True):
    """What admission reserves: tokens in (from the body size) and out (``max_tokens``).
    (A Struct: made on every limited call, and built in C.)"""

    prompt_tokens: int
    output_tokens: int

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens


class LedgerRow(msgspec.Struct, kw_only=True):
    """One call, as the ledger stores it (docs/GATEWAY.md, "The ledger")."""

    ts: float  # seconds since the epoch, when the call arrived
    request_id: str
    model: str
    status: int
    duration_ms: float
    caller: str | None = None
    key_name: str | None = None
    upstream: str | None = None
    dialect: str = "openai"
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_nano_usd: int = 0
    ttft_ms: float | None = None
    error: str | None = None


class KeyRecord(msgspec.Struct, kw_only=True):
    """A virtual key as stored: its keyed hash, never the key."""

    name: str
    hash: bytes
    hint: str
    models: list[str] = msgspec.field(default_factory=lambda: ["*"])
    rpm: int | None = None
    tpm: int | None = None
    max_streams: int | None = None
    budget_usd: float | None = None
    budget_per: Period | None = None
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None

    def identity(self) -> Identity:
        limits = Limits(
            rpm=self.rpm,
            tpm=self.tpm,
            max_streams=self.max_streams,
            budget_usd=self.budget_usd,
            budget_per=self.budget_per or "day",
        )
        return Identity(
            self.name,
            key_name=self.name,
            models=self.models,
            limits=limits,
            expires_at=self.expires_at,
        )

    def __repr__(self) -> str:
        return f"KeyRecord({self.name!r}, hint={self.hint!r})"


class UsageLine(msgspec.Struct):
    """One group of an ``aifetch usage`` report."""

    name: str | None
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_nano_usd: int
    errors: int

    @property
    def cost_usd(self) -> float:
        return self.cost_nano_usd / 1e9
