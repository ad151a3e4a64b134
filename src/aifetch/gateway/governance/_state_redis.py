"""Counters shared through Redis (``state: redis://...``): every worker and instance
admits against one set of counters.

- **Admission is one script call** (``EVALSHA``): the script reads every counter the call
  must fit in and reserves them all, or none, atomically (Redis runs a script alone), so
  no two processes can both take the last slot. The script is cached by its SHA; after a
  Redis restart empties the cache, the client sends it again on ``NOSCRIPT``. The client
  is this package's own (``_redis_client``: one pipelined connection), measured far
  cheaper per call than redis-py's asyncio client.
- **Settlement is batched**: ``settle`` only appends to a list; a background task sends
  what has gathered every ``settle_interval`` (or at once past ``_BATCH`` operations) in
  one script call. Nothing here runs per stream chunk.
- **Unreachable Redis** raises ``StateUnavailable`` at once: a failed call marks the store
  down, and until a background ``PING`` succeeds again admissions do not wait on it (the
  governor then follows ``on_state_error``). Settlements wait in a bounded list and go
  out when Redis is back; a settlement whose counter has expired (or was lost with a
  restart) changes nothing, so none brings back a stale window.

Keys: ``<prefix>{<scope>}:...``. The braces are a hash tag, so one caller's counters share
a cluster slot (``_plan._base``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ._errors import StateUnavailable
from ._plan import BUDGET, TOKENS, CallPlan, Check, Slot, layout
from ._pricing import PriceTable
from ._redis_client import RedisClient, ReplyError, encode_parts, script_sha
from ._state_memory import SettleOp
from ._types import Identity

# What a failed call raises: the connection (ConnectionError, TimeoutError: both OSError)
# or an error reply.
RedisError = (OSError, ReplyError)

__all__ = ["RedisPlan", "RedisState"]

log = logging.getLogger("aifetch.gateway.governance")

# KEYS: one per check. ARGV: now (ms), the call's id, and one string with each check's
# "<kind><limit>,<cost>,<ttl s>" separated by spaces: three arguments instead of four per
# check, since redis-py's encoding of each argument is most of a call's client CPU
# (bench/README.md, governance). Returns {admitted (1/0), each counter before this call}.
# Every counter is read before any is written, so the answer has the whole picture.
_ADMIT = """
local now = tonumber(ARGV[1])
local kinds, limits, costs, ttls = {}, {}, {}, {}
local n = 0
for kind, limit, cost, ttl in string.gmatch(ARGV[3], '(%a)(%d+),(%d+),(%d+)') do
  n = n + 1
  kinds[n], limits[n], costs[n], ttls[n] = kind, tonumber(limit), tonumber(cost), tonumber(ttl)
end
local out = {1}
for i = 1, #KEYS do
  local used
  if kinds[i] == 's' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    used = redis.call('ZCARD', KEYS[i])
  else
    used = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  out[i + 1] = used
  if used + costs[i] > limits[i] then out[1] = 0 end
end
if out[1] == 1 then
  for i = 1, #KEYS do
    if kinds[i] == 's' then
      redis.call('ZADD', KEYS[i], now + ttls[i] * 1000, ARGV[2])
      redis.call('PEXPIRE', KEYS[i], ttls[i] * 1000)
    else
      redis.call('INCRBY', KEYS[i], costs[i])
      redis.call('EXPIRE', KEYS[i], ttls[i])
    end
  end
end
return out
"""

# KEYS: the keys a batch touches, each once. ARGV: per key "i <delta>" (add to a counter
# that still exists: a late settlement never recreates an ended window without its
# expiry) or "f <call id> <call id> ..." (free stream slots).
_SETTLE = """
for i = 1, #KEYS do
  local op, rest = string.sub(ARGV[i], 1, 1), string.sub(ARGV[i], 3)
  if op == 'i' then
    if redis.call('EXISTS', KEYS[i]) == 1 then
      redis.call('INCRBY', KEYS[i], rest)
    end
  else
    for member in string.gmatch(rest, '%S+') do
      redis.call('ZREM', KEYS[i], member)
    end
  end
end
return #KEYS
"""

# Operations per settle script call: a long script blocks Redis for everyone meanwhile.
_BATCH = 1000
# Settlements kept while Redis is away; past this they are dropped (and counted).
_MAX_PENDING = 200_000
_PROBE_INTERVAL = 0.2
_ADMIT_SHA = script_sha(_ADMIT)
_SETTLE_SHA = script_sha(_SETTLE)
# Plans kept at most (one per caller, model and stream or not, per minute).
_MAX_PLANS = 4096


class RedisPlan(CallPlan):
    """A ``CallPlan`` with its admission command made but for its last three arguments
    (now, the call's id, the checks' spec, whose token and spend amounts vary per call):
    the ``EVALSHA`` head (keys included), the same as ``EVAL`` for ``NOSCRIPT``, and the
    spec as a template (``%(t)d`` tokens, ``%(b)d`` spend)."""

    __slots__ = ("by_sha", "spec", "whole")

    def __init__(self, minute: int, slots: list[Slot], price: Any) -> None:
        super().__init__(minute, slots, price)
        keys = [slot[1] for slot in slots]
        count = b"*%d\r\n" % (3 + len(keys) + 3)
        self.by_sha = count + encode_parts(b"EVALSHA", _ADMIT_SHA, len(keys), *keys)
        self.whole = count + encode_parts(b"EVAL", _ADMIT, len(keys), *keys)
        specs = []
        for kind, _, limit, ttl, _, _ in slots:
            amount = "%(t)d" if kind == TOKENS else "%(b)d" if kind == BUDGET else "1"
            specs.append(f"{kind}{limit},{amount},{ttl}")
        self.spec = " ".join(specs)


class RedisState:
    """Shared counters in Redis. ``on_change(available)`` is called when the store goes
    away or comes back (the governor logs and counts it)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        settle_interval: float,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        # Fails fast: one failed call decides (on_state_error); no retry holds a request.
        self.client = RedisClient(url, timeout=timeout)
        self._interval = settle_interval
        self._plans: dict[tuple[Identity, str, bool], RedisPlan] = {}
        self._pending: list[SettleOp] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._probe: asyncio.Task[None] | None = None
        self._on_change = on_change
        self.available = True
        self.dropped = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the settle task and check Redis once (an unreachable Redis is not an
        error here: it is probed until it answers)."""
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="aifetch-settle"))
        try:
            await self.client.ping()
        except RedisError:
            self.mark_down()

    async def aclose(self) -> None:
        """Send the settlements still waiting (if Redis answers), then disconnect."""
        for task in [*self._tasks, self._probe]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._pending and self.available:
            with contextlib.suppress(*RedisError):
                await self._send(self._pending)
                self._pending = []
        await self.client.aclose()

    # ------------------------------------------------------------------ admission

    async def admit(self, checks: list[Check], member: str, now: float) -> tuple[bool, list[int]]:
        """Reserve every check or none; ``(admitted, each counter before this call)``.
        Raises StateUnavailable when Redis does not answer."""
        if not self.available:
            raise StateUnavailable("the state store is unreachable")
        spec = " ".join([f"{c.kind}{c.limit},{c.cost},{c.ttl}" for c in checks])
        args = [int(now * 1000), member, spec]
        try:
            answer = await self.client.script(_ADMIT_SHA, _ADMIT, [c.key for c in checks], args)
        except RedisError as exc:
            self.mark_down(exc)
            raise StateUnavailable("the state store is unreachable") from None
        return answer[0] == 1, answer[1:]

    def plan(
        self,
        who: Identity,
        model: str,
        stream: bool,
        now: float,
        prefix: str,
        lease: int,
        prices: PriceTable,
    ) -> RedisPlan:
        """``who``'s counters on ``model`` this minute, with their command (made once a
        minute)."""
        minute = int(now // 60)
        key = (who, model, stream)
        plan = self._plans.get(key)
        if plan is None or plan.minute != minute:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            slots = layout(who, model, stream, now, prefix, lease)
            plan = self._plans[key] = RedisPlan(minute, slots, prices.price(model))
        return plan

    async def admit_plan(
        self, plan: RedisPlan, tokens: int, cost: int, member: str, now: float
    ) -> tuple[bool, list[int]]:
        """``admit`` for a plan: its command's head made once a minute, its end here."""
        if not self.available:
            raise StateUnavailable("the state store is unreachable")
        tail = encode_parts(int(now * 1000), member, plan.spec % {"t": tokens, "b": cost})
        try:
            answer = await self.client.run_script(plan.by_sha + tail, plan.whole + tail)
        except RedisError as exc:
            self.mark_down(exc)
            raise StateUnavailable("the state store is unreachable") from None
        return answer[0] == 1, answer[1:]

    # ------------------------------------------------------------------ settlement

    def settle(self, ops: Iterable[SettleOp]) -> None:
        """Queue settlement operations (never waits)."""
        ops = list(ops)
        if len(self._pending) + len(ops) > _MAX_PENDING:
            self.dropped += len(ops)
            return
        self._pending += ops
        if len(self._pending) >= _BATCH:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Send what is queued now (the settle task does this on its own)."""
        if not self._pending or not self.available:
            return
        batch, self._pending = self._pending, []
        try:
            await self._send(batch)
        except RedisError as exc:
            # Keep them for when Redis is back, ahead of newer ones, within the bound.
            room = max(0, _MAX_PENDING - len(self._pending))
            self.dropped += max(0, len(batch) - room)
            self._pending[:0] = batch[:room]
            self.mark_down(exc)

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            await self.flush()

    async def _send(self, ops: list[SettleOp]) -> None:
        # One entry per key: counter corrections add up, freed slots are listed.
        deltas: dict[str, int] = {}
        frees: dict[str, list[str]] = {}
        for op, key, value in ops:
            if op == "free":
                frees.setdefault(key, []).append(str(value))
            else:
                deltas[key] = deltas.get(key, 0) + int(value)
        items = [(key, f"i {delta}") for key, delta in deltas.items() if delta]
        for key, members in frees.items():
            # Slices keep one script call short: Redis serves no one else meanwhile.
            for start in range(0, len(members), _BATCH):
                items.append((key, "f " + " ".join(members[start : start + _BATCH])))
        for start in range(0, len(items), _BATCH):
            part = items[start : start + _BATCH]
            keys, specs = [key for key, _ in part], [spec for _, spec in part]
            await self.client.script(_SETTLE_SHA, _SETTLE, keys, specs)

    # ------------------------------------------------------------------ health

    def mark_down(self, exc: BaseException | None = None) -> None:
        if not self.available:
            return
        self.available = False
        reason = type(exc).__name__ if exc is not None else "no answer"
        log.warning("state store unreachable (%s); probing it every %.1fs", reason, _PROBE_INTERVAL)
        if self._on_change is not None:
            self._on_change(False)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._probe_loop(), name="aifetch-state-probe")

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(_PROBE_INTERVAL)
            try:
                await self.client.ping()
            except RedisError:
                continue
            self.available = True
            log.warning("state store reachable again")
            if self._on_change is not None:
                self._on_change(True)
            self._wake.set()  # send the settlements that waited
            return
