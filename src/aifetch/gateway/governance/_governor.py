"""The governor: one per app, built from config; the one object the request path talks to.

It ties the pieces together: identities (config callers and virtual keys), admission
against memory or Redis counters (with ``on_state_error`` when Redis is away),
settlement, prices, and the ledger. See the package docstring for the call sequence.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import _codes as codes
from ._admin import AdminApi
from ._config import governance_active
from ._errors import StateUnavailable
from ._estimate import estimate_request
from ._keys import KeyRing
from ._ledger import Database, Ledger, open_database
from ._metrics import GovernanceMetrics
from ._plan import (
    BUDGET,
    STREAMS,
    TOKENS,
    Admission,
    Check,
    build_checks,
    refusal,
    success_headers,
)
from ._pricing import PriceTable
from ._state_memory import MemoryState, SettleOp
from ._types import Estimate, Identity, LedgerRow, Limits, Usage

if TYPE_CHECKING:
    from .._config import CallerConfig, GatewayConfig
    from ._state_redis import RedisState

__all__ = ["UNLIMITED", "Governor"]

# The admission of a caller with no limits: nothing reserved, nothing to settle, no
# headers. Shared: never mutate it.
UNLIMITED = Admission([], "", 0, 0, "", [], local=True)
_PRUNE_EVERY = 30.0


def _identity(caller: CallerConfig) -> Identity:
    limits = None if caller.limits is None else Limits.from_config(caller.limits)
    per_model = {m: Limits.from_config(c) for m, c in caller.model_limits.items()}
    return Identity(caller.name, models=caller.models, limits=limits, model_limits=per_model)


class Governor:
    """Keys, limits, budgets and the ledger for one gateway app."""

    def __init__(self, config: GatewayConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        tuning = self.tuning = config.governance
        self._clock = clock
        self.prices = PriceTable({name: m.price for name, m in config.models.items()})
        self._callers = {c.name: _identity(c) for c in config.callers}
        self.metrics = GovernanceMetrics()
        self.local = MemoryState()
        self.shared: RedisState | None = None
        if config.state != "memory":
            from ._state_redis import RedisState

            self.shared = RedisState(
                config.state,
                timeout=tuning.state_timeout,
                settle_interval=tuning.settle_interval,
                on_change=self._state_changed,
            )
            self.metrics.state_up = lambda: self.shared is None or self.shared.available
            self.metrics.settle_dropped = lambda: 0 if self.shared is None else self.shared.dropped
        self.closed_on_state_error = config.on_state_error == "closed"
        self.db: Database | None = None
        self.ledger: Ledger | None = None
        self.keys: KeyRing | None = None
        self.admin: AdminApi | None = None
        if config.ledger is not None:
            self._open_ledger(config.ledger)
        # Whether any call needs this at all: without it the gateway can skip the stage.
        self.enabled = governance_active(config) or self.ledger is not None
        self._lease = int(tuning.stream_lease)
        self._ids = itertools.count()
        # Call ids are unique across processes: stream slots in Redis are keyed by them.
        self._node = secrets.token_hex(6) + ":"
        self._prune: asyncio.TimerHandle | None = None

    def _open_ledger(self, url: str) -> None:
        config, tuning = self.config, self.tuning
        self.db = open_database(url)
        self.ledger = Ledger(
            self.db,
            capacity=tuning.ledger_buffer,
            batch=tuning.ledger_batch,
            interval=tuning.ledger_interval,
        )
        ledger = self.ledger
        self.metrics.ledger_written = lambda: ledger.written
        self.metrics.ledger_dropped = lambda: ledger.dropped
        self.metrics.ledger_buffered = lambda: ledger.buffered
        if config.keys is not None:
            keys = self.keys = KeyRing(
                self.db, config.keys.secret, refresh=config.keys.refresh, clock=self._clock
            )
            self.metrics.keys_active = lambda: len(keys)
            if config.admin is not None:
                self.admin = AdminApi(config.admin.key, keys, set(config.models))

    def __repr__(self) -> str:
        return f"Governor(state={'redis' if self.shared else 'memory'}, enabled={self.enabled})"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect the ledger database (SQLite: create or migrate its schema; PostgreSQL:
        check it), load the virtual keys, start the background tasks."""
        if self.db is not None:
            await self.db.connect()
        if self.keys is not None:
            await self.keys.refresh()
            self.keys.start()
        if self.ledger is not None:
            self.ledger.start()
        if self.shared is not None:
            await self.shared.start()
        self._prune = asyncio.get_running_loop().call_later(_PRUNE_EVERY, self._prune_local)

    async def aclose(self) -> None:
        """Stop the tasks; send the settlements and write the ledger rows still waiting."""
        if self._prune is not None:
            self._prune.cancel()
            self._prune = None
        if self.keys is not None:
            await self.keys.aclose()
        if self.shared is not None:
            await self.shared.aclose()
        if self.ledger is not None:
            await self.ledger.aclose()
        if self.db is not None:
            await self.db.close()

    def _prune_local(self) -> None:
        self.local.prune(self._clock())
        self._prune = asyncio.get_running_loop().call_later(_PRUNE_EVERY, self._prune_local)

    def _state_changed(self, available: bool) -> None:
        if not available:
            self.metrics.state_outages += 1

    # ------------------------------------------------------------------ who

    def caller(self, name: str) -> Identity | None:
        """The identity of a config caller (by the name the Authenticator found)."""
        return self._callers.get(name)

    def identify(self, key: bytes) -> Identity | None:
        """The virtual key ``key`` belongs to, or None (unknown, revoked, expired, or no
        virtual keys configured). Never waits: it reads the refreshed snapshot."""
        return None if self.keys is None else self.keys.identify(key)

    # ------------------------------------------------------------------ limits

    def estimate(
        self,
        body_bytes: int,
        max_tokens: int | None,
        n: int | None = None,
        *,
        embeddings: bool = False,
    ) -> Estimate:
        return estimate_request(
            body_bytes,
            max_tokens=max_tokens,
            n=n,
            default_output_tokens=self.tuning.default_output_tokens,
            embeddings=embeddings,
        )

    async def admit(self, who: Identity, model: str, estimate: Estimate, stream: bool) -> Admission:
        """Reserve this call against every limit of ``who`` (and of ``who`` on ``model``),
        or raise the 429 ``GatewayError`` (or 503 with ``on_state_error: closed`` and the
        state store away). At most one Redis round trip."""
        if not who.limited:
            return UNLIMITED
        now = self._clock()
        tokens = estimate.tokens
        cost = self.prices.estimate(model, estimate)
        checks = build_checks(
            who,
            model,
            tokens=tokens,
            cost=cost,
            stream=stream,
            now=now,
            prefix=self.tuning.prefix,
            lease=self._lease,
        )
        if not checks:
            return UNLIMITED
        member = f"{self._node}{next(self._ids)}"
        local = True
        if self.shared is not None:
            try:
                admitted, used = await self.shared.admit(checks, member, now)
                local = False
            except StateUnavailable:
                admitted, used = self._without_state(checks, member, now)
            except asyncio.CancelledError:
                # The caller went away mid-admission: the script may have run. Freeing a
                # stream slot that was never taken is harmless, so free it; tokens and
                # spend keep their (possible) reservation, the cautious side.
                frees = [("free", c.key, member) for c in checks if c.kind == STREAMS]
                self.shared.settle(frees)
                raise
        else:
            admitted, used = self.local.admit(checks, member, now)
        if not admitted:
            failed, error = refusal(checks, used)
            self.metrics.refused(failed.kind)
            raise error
        return Admission(checks, member, tokens, cost, model, success_headers(checks, used), local)

    def _without_state(
        self, checks: list[Check], member: str, now: float
    ) -> tuple[bool, list[int]]:
        if self.closed_on_state_error:
            self.metrics.state_refused += 1
            raise codes.STATE_UNAVAILABLE(
                "The gateway cannot reach its rate-limit store; try again shortly.",
                headers=[("retry-after", "1")],
            )
        self.metrics.state_local += 1
        return self.local.admit(checks, member, now)

    def settle(self, admission: Admission, usage: Usage | None) -> None:
        """The call is over: free its stream slot and correct its token and spend
        reservations by (actual - estimate). Never waits; with Redis the corrections are
        sent in batches. ``usage=None`` (unknown, e.g. a stream cut before its usage
        chunk): the reservation stands as the call's cost. ``Usage()`` (zeros): the call
        used nothing (it failed before an upstream answered). Settling twice is a no-op."""
        if admission.settled or not admission.checks:
            return
        admission.settled = True
        ops: list[SettleOp] = []
        cost_delta = 0
        if usage is not None:
            cost_delta = self.prices.cost(admission.model, usage) - admission.cost
        for check in admission.checks:
            if check.kind == STREAMS:
                ops.append(("free", check.key, admission.member))
            elif usage is None:
                continue
            elif check.kind == TOKENS and usage.tokens != admission.tokens:
                ops.append(("incr", check.key, usage.tokens - admission.tokens))
            elif check.kind == BUDGET and cost_delta:
                ops.append(("incr", check.key, cost_delta))
        if not ops:
            return
        if admission.local or self.shared is None:
            self.local.settle(ops, self._clock())
        else:
            self.shared.settle(ops)

    def cost(self, model: str, usage: Usage) -> int:
        """What ``usage`` cost on ``model``, in nano-USD (for the ledger row)."""
        return self.prices.cost(model, usage)

    # ------------------------------------------------------------------ ledger

    def record(self, row: LedgerRow) -> None:
        """Add one call to the ledger (never waits; a no-op without ``ledger:``)."""
        if self.ledger is not None:
            self.ledger.record(row)

    async def flush(self) -> None:
        """Send waiting settlements and ledger rows now (tests, benchmarks)."""
        if self.shared is not None:
            await self.shared.flush()
        if self.ledger is not None:
            while self.ledger.buffered and await self.ledger.flush():
                pass
