"""The governor: one per app, built from config; the one object the request path talks to.

It ties the pieces together: identities (config callers and virtual keys), admission
against memory or Redis counters (with ``on_state_error`` when Redis is away),
settlement, prices, and the ledger. See the package docstring for the call sequence.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import _codes as codes
from ._admin import AdminApi
from ._config import governance_active
from ._errors import StateUnavailable
from ._estimate import estimate_with
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
        # What a call reserves: ``estimate(body_bytes, max_tokens, n=None,
        # embeddings=False) -> Estimate`` (``_estimate.estimate_request`` with this config's
        # default output). A partial rather than a method: one Python frame on every
        # limited call instead of two.
        self.estimate: Callable[..., Estimate] = functools.partial(
            estimate_with, tuning.default_output_tokens
        )
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

    @property
    def needs_start(self) -> bool:
        """Whether the app starts and closes it: governance is on, or a shared state store
        is configured (the response ids use it too, with no limit set)."""
        return self.enabled or self.shared is not None

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

    def admit_now(
        self, who: Identity, model: str, estimate: Estimate, stream: bool
    ) -> Admission | None:
        """``admit`` when it needs no Redis call (memory state, or a caller without
        limits): the admission, or the 429 raised. ``None``: await ``admit`` instead.
        Not a coroutine, and few calls deep: it runs on every limited call (bench/README.md,
        governance)."""
        if not who.limited:
            return UNLIMITED
        if self.shared is not None:
            return None
        now = self._clock()
        plan = self.local.plan(
            who, model, stream, now, self.tuning.prefix, self._lease, self.prices
        )
        if not plan.cells:
            return UNLIMITED
        prompt, output = estimate.prompt_tokens, estimate.output_tokens
        tokens = prompt + output
        cost = plan.cost_of(prompt, output)
        member = f"{self._node}{next(self._ids)}" if plan.streams else ""
        admitted, used = self.local.admit_plan(plan, tokens, cost, member, now)
        if admitted and plan.simple:
            headers = plan.headers(used, tokens, now)
            return Admission([], member, tokens, cost, model, headers, True, plan)
        # The rare ways: a refusal, or several scopes speaking in the headers.
        checks = self._checks(who, model, tokens, cost, stream, now)
        decided = self._decided(checks, admitted, used, member, tokens, cost, model, True)
        decided.checks, decided.plan = [], plan  # settled on the plan's cells
        return decided

    async def admit(self, who: Identity, model: str, estimate: Estimate, stream: bool) -> Admission:
        """Reserve this call against every limit of ``who`` (and of ``who`` on ``model``),
        or raise the 429 ``GatewayError`` (or 503 with ``on_state_error: closed`` and the
        state store away). At most one Redis round trip."""
        if not who.limited:
            return UNLIMITED
        if self.shared is None:
            admission = self.admit_now(who, model, estimate, stream)
            assert admission is not None  # decided at once without Redis
            return admission
        shared = self.shared
        now = self._clock()
        plan = shared.plan(who, model, stream, now, self.tuning.prefix, self._lease, self.prices)
        if not plan.slots:
            return UNLIMITED
        prompt, output = estimate.prompt_tokens, estimate.output_tokens
        tokens = prompt + output
        cost = plan.cost_of(prompt, output)
        member = f"{self._node}{next(self._ids)}" if plan.streams else "-"
        try:
            admitted, used = await shared.admit_plan(plan, tokens, cost, member, now)
        except StateUnavailable:
            checks = self._checks(who, model, tokens, cost, stream, now)
            admitted, used = self._without_state(checks, member, now)
            return self._decided(checks, admitted, used, member, tokens, cost, model, True)
        except asyncio.CancelledError:
            # The caller went away mid-admission: the script may have run. Freeing a
            # stream slot that was never taken is harmless, so free it; tokens and
            # spend keep their (possible) reservation, the cautious side.
            shared.settle([("free", slot[1], member) for slot in plan.slots if slot[0] == STREAMS])
            raise
        if admitted and plan.simple:
            headers = plan.headers(used, tokens, now)
            return Admission(plan.slots, member, tokens, cost, model, headers, False)
        # The rare ways: a refusal, or several scopes speaking in the headers.
        checks = self._checks(who, model, tokens, cost, stream, now)
        return self._decided(checks, admitted, used, member, tokens, cost, model, False)

    def _checks(
        self, who: Identity, model: str, tokens: int, cost: int, stream: bool, now: float
    ) -> list[Check]:
        return build_checks(
            who,
            model,
            tokens=tokens,
            cost=cost,
            stream=stream,
            now=now,
            prefix=self.tuning.prefix,
            lease=self._lease,
        )

    def _decided(
        self,
        checks: list[Check],
        admitted: bool,
        used: list[int],
        member: str,
        tokens: int,
        cost: int,
        model: str,
        local: bool,
    ) -> Admission:
        """The admission, or the refusal raised, with headers worked out in full."""
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
        if admission.settled:
            return
        plan = admission.plan
        if plan is not None:
            admission.settled = True
            if usage is None:
                self.local.settle_plan(plan, admission.member, None, None)
                return
            tokens = usage.prompt_tokens + usage.completion_tokens - admission.tokens
            cost = plan.price.cost(usage) - admission.cost if plan.budget else 0
            self.local.settle_plan(plan, admission.member, tokens, cost)
            return
        if not admission.checks:
            return
        admission.settled = True
        ops: list[SettleOp] = []
        for check in admission.checks:  # a Check or a Slot: kind [0], key [1]
            kind, key = check[0], check[1]
            if kind == STREAMS:
                ops.append(("free", key, admission.member))
            elif usage is None:
                continue
            elif kind == TOKENS:
                tokens = usage.prompt_tokens + usage.completion_tokens - admission.tokens
                if tokens:
                    ops.append(("incr", key, tokens))
            elif kind == BUDGET:
                spend = self.prices.cost(admission.model, usage) - admission.cost
                if spend:
                    ops.append(("incr", key, spend))
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
