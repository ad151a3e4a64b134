"""Counters in this process (``state: memory``, and the local fallback when Redis is
unreachable): the same checks and the same answers as the Redis script, in plain dicts.

Everything here runs on the event loop thread between awaits, so an admission's checks
and its reservation are one atomic step without a lock.

Two ways in:

- ``admit`` / ``settle`` take ``Check`` lists and settle operations by key, as the Redis
  state does (the fallback while Redis is away uses these).
- ``plan`` / ``admit_plan`` / ``settle_plan``, memory state's own hot path: a caller's
  counters on one model are resolved once a minute to their cells (the very lists and
  dicts the counters live in), so an admission is one pass over a few cells, and its
  settlement corrects them in place, with no key built or looked up per call. (Measured
  with the valgrind recipe of bench/gateway_overhead.py: admit and settle of a caller
  with four limits went from ~80k to ~30k instructions; bench/README.md.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._plan import BUDGET, STREAMS, TOKENS, CallPlan, Check, Slot, layout
from ._pricing import Price, PriceTable
from ._types import Identity

__all__ = ["MemoryPlan", "MemoryState", "SettleOp"]

# ("incr", key, delta) adds to a counter that still exists; ("free", key, member) ends a
# stream's lease.
SettleOp = tuple[str, str, "int | str"]

# Compiled plans kept at most (one per caller, model and stream or not, per minute); past
# it they are made again.
_MAX_PLANS = 4096


class MemoryPlan(CallPlan):
    """A ``CallPlan`` with its counters as cells: ``(kind, cell, limit, ttl)``, a counter's
    cell being its ``[value, expires_at]`` list and a stream limit's its ``{member: lease
    end}`` dict."""

    __slots__ = ("cells",)

    def __init__(
        self,
        minute: int,
        slots: list[Slot],
        cells: list[tuple[str, Any, int, int]],
        price: Price | None,
    ) -> None:
        super().__init__(minute, slots, price)
        self.cells = cells


class MemoryState:
    def __init__(self) -> None:
        # key → [value, expires_at]
        self._counters: dict[str, list[float]] = {}
        # key → {member: lease end}
        self._streams: dict[str, dict[str, float]] = {}
        # (caller, model, stream) → its plan this minute
        self._plans: dict[tuple[Identity, str, bool], MemoryPlan] = {}

    # ------------------------------------------------------------------ by checks

    def _slots_used(self, check: Check, now: float) -> int:
        slots = self._streams.get(check.key)
        if not slots:
            return 0
        return _live_slots(slots, check.cost, check.limit, now)

    def admit(self, checks: list[Check], member: str, now: float) -> tuple[bool, list[int]]:
        """Reserve every check, or none: ``(admitted, each counter before this call)``.
        (Tuple indexes: kind 0, key 1, limit 2, cost 3, ttl 4.)"""
        counters = self._counters
        used: list[int] = []
        admitted = True
        for check in checks:
            if check[0] == STREAMS:
                before = self._slots_used(check, now)
            else:
                entry = counters.get(check[1])
                before = int(entry[0]) if entry is not None and entry[1] > now else 0
            used.append(before)
            if before + check[3] > check[2]:
                admitted = False
        if not admitted:
            return False, used
        for check, before in zip(checks, used, strict=True):
            if check[0] == STREAMS:
                self._streams.setdefault(check[1], {})[member] = now + check[4]
                continue
            entry = counters.get(check[1])
            if entry is None:
                counters[check[1]] = [before + check[3], now + check[4]]
            else:  # in place: a plan may hold this cell
                entry[0], entry[1] = before + check[3], now + check[4]
        return True, used

    def settle(self, ops: Iterable[SettleOp], now: float) -> None:
        counters = self._counters
        for op, key, value in ops:
            if op == "free":
                slots = self._streams.get(key)
                if slots is not None:
                    slots.pop(str(value), None)
                continue
            entry = counters.get(key)
            # A counter whose window has ended is not brought back by a late settlement.
            if entry is not None and entry[1] > now:
                entry[0] += int(value)

    # ------------------------------------------------------------------ by plan

    def plan(
        self,
        who: Identity,
        model: str,
        stream: bool,
        now: float,
        prefix: str,
        lease: int,
        prices: PriceTable,
    ) -> MemoryPlan:
        """The cells of ``who``'s counters on ``model`` this minute (``_plan.layout``),
        made once a minute."""
        minute = int(now // 60)
        # By model too: its price is part of the plan. (A caller naming many models it may
        # not use only has plans made again: the cache is bounded.)
        key = (who, model, stream)
        plan = self._plans.get(key)
        if plan is not None and plan.minute == minute:
            return plan
        slots = layout(who, model, stream, now, prefix, lease)
        cells: list[tuple[str, Any, int, int]] = []
        for kind, name, limit, ttl, _, _ in slots:
            if kind == STREAMS:
                cells.append((kind, self._streams.setdefault(name, {}), limit, ttl))
                continue
            entry = self._counters.get(name)
            if entry is None or entry[1] <= now:
                entry = self._counters[name] = [0, now + ttl]
            cells.append((kind, entry, limit, ttl))
        if len(self._plans) >= _MAX_PLANS:
            self._plans.clear()
        plan = self._plans[key] = MemoryPlan(minute, slots, cells, prices.price(model))
        return plan

    def admit_plan(
        self, plan: MemoryPlan, tokens: int, cost: int, member: str, now: float
    ) -> tuple[bool, list[int]]:
        """``admit`` on a plan's cells: ``(admitted, each counter before this call)``."""
        used: list[int] = []
        for kind, cell, limit, ttl in plan.cells:
            if kind == STREAMS:
                before = _live_slots(cell, 1, limit, now) if cell else 0
                if before + 1 > limit:
                    used.append(before)
                    return False, self._undo(plan, used, tokens, cost, member, now)
                cell[member] = now + ttl
            else:
                before = int(cell[0])
                amount = tokens if kind == TOKENS else cost if kind == BUDGET else 1
                if before + amount > limit:
                    used.append(before)
                    return False, self._undo(plan, used, tokens, cost, member, now)
                cell[0] = before + amount
            used.append(before)
        return True, used

    def _undo(
        self, plan: MemoryPlan, used: list[int], tokens: int, cost: int, member: str, now: float
    ) -> list[int]:
        """A refusal: give back what the cells before the failing one reserved, and read
        the counters after it (the 429's headers show them all)."""
        failed = len(used) - 1
        for kind, cell, _, _ in plan.cells[:failed]:
            if kind == STREAMS:
                cell.pop(member, None)
            else:
                cell[0] -= tokens if kind == TOKENS else cost if kind == BUDGET else 1
        for kind, cell, limit, _ in plan.cells[failed + 1 :]:
            used.append(_live_slots(cell, 1, limit, now) if kind == STREAMS else int(cell[0]))
        return used

    def settle_plan(
        self, plan: MemoryPlan, member: str, tokens: int | None, cost: int | None
    ) -> None:
        """Free the call's stream slot and add ``tokens`` and ``cost`` (actual - reserved;
        ``None``: not known, the reservation stands) to their counters. (A late settlement
        into a window that has ended changes a counter nobody reads any more.)"""
        for kind, cell, _, _ in plan.cells:
            if kind == STREAMS:
                cell.pop(member, None)
            elif kind == TOKENS:
                if tokens:
                    cell[0] += tokens
            elif kind == BUDGET and cost:
                cell[0] += cost

    # ------------------------------------------------------------------ upkeep

    def prune(self, now: float) -> None:
        """Forget ended windows and leases (called from time to time, not per call). The
        plans are made again after it: none may hold a cell that is gone."""
        self._plans.clear()
        for key in [k for k, (_, end) in self._counters.items() if end <= now]:
            del self._counters[key]
        for key, slots in list(self._streams.items()):
            for member in [m for m, end in slots.items() if end <= now]:
                del slots[member]
            if not slots:
                del self._streams[key]

    def __len__(self) -> int:
        return len(self._counters) + len(self._streams)


def _live_slots(slots: dict[str, float], cost: int, limit: int, now: float) -> int:
    if len(slots) + cost > limit:
        # Full: only now do ended leases matter (a process does not die mid-stream on its
        # own, so this is rare).
        for member in [m for m, end in slots.items() if end <= now]:
            del slots[member]
    return len(slots)
