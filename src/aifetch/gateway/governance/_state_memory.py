"""Counters in this process (``state: memory``, and the local fallback when Redis is
unreachable): the same checks and the same answers as the Redis script, in plain dicts.

Everything here runs on the event loop thread between awaits, so an admission's checks
and its reservation are one atomic step without a lock.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._plan import STREAMS, Check

__all__ = ["MemoryState", "SettleOp"]

# ("incr", key, delta) adds to a counter that still exists; ("free", key, member) ends a
# stream's lease.
SettleOp = tuple[str, str, "int | str"]


class MemoryState:
    def __init__(self) -> None:
        # key → [value, expires_at]
        self._counters: dict[str, list[float]] = {}
        # key → {member: lease end}
        self._streams: dict[str, dict[str, float]] = {}

    def _used(self, check: Check, now: float) -> int:
        if check.kind == STREAMS:
            slots = self._streams.get(check.key)
            if not slots:
                return 0
            if len(slots) + check.cost > check.limit:
                # Full: only now do ended leases matter (a process does not die mid-stream
                # on its own, so this is rare).
                for member in [m for m, end in slots.items() if end <= now]:
                    del slots[member]
            return len(slots)
        entry = self._counters.get(check.key)
        return int(entry[0]) if entry is not None and entry[1] > now else 0

    def admit(self, checks: list[Check], member: str, now: float) -> tuple[bool, list[int]]:
        """Reserve every check, or none: ``(admitted, each counter before this call)``."""
        used = [self._used(check, now) for check in checks]
        for check, before in zip(checks, used, strict=True):
            if before + check.cost > check.limit:
                return False, used
        for check, before in zip(checks, used, strict=True):
            if check.kind == STREAMS:
                self._streams.setdefault(check.key, {})[member] = now + check.ttl
            else:
                self._counters[check.key] = [before + check.cost, now + check.ttl]
        return True, used

    def settle(self, ops: Iterable[SettleOp], now: float) -> None:
        for op, key, value in ops:
            if op == "free":
                slots = self._streams.get(key)
                if slots is not None:
                    slots.pop(str(value), None)
                continue
            entry = self._counters.get(key)
            # A counter whose window has ended is not brought back by a late settlement.
            if entry is not None and entry[1] > now:
                entry[0] += int(value)

    def prune(self, now: float) -> None:
        """Forget ended windows and leases (called from time to time, not per call)."""
        for key in [k for k, (_, end) in self._counters.items() if end <= now]:
            del self._counters[key]
        for key, slots in list(self._streams.items()):
            for member in [m for m, end in slots.items() if end <= now]:
                del slots[member]
            if not slots:
                del self._streams[key]

    def __len__(self) -> int:
        return len(self._counters) + len(self._streams)
