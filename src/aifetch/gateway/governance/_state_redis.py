"""Counters shared through Redis (``state: redis://...``): every worker and instance
admits against one set of counters.

- **Admission is one script call** (``EVALSHA``): the script reads every counter the call
  must fit in and reserves them all, or none, atomically (Redis runs a script alone), so
  no two processes can both take the last slot. The script is cached by its SHA; after a
  Redis restart empties the cache, redis-py loads it again on ``NOSCRIPT``.
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

from ._errors import MissingPackageError, StateUnavailable
from ._plan import Check
from ._state_memory import SettleOp

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - the redis extra is part of the test set-up
    raise MissingPackageError(
        "state: redis://... needs the 'redis' package: pip install 'aifetch[redis]'"
    ) from None

__all__ = ["RedisState"]

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
# Admissions talking to Redis at once (each holds a connection for one round trip).
_MAX_IN_FLIGHT = 64


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
        pool = aioredis.ConnectionPool.from_url(
            url,
            max_connections=_MAX_IN_FLIGHT + 4,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # Fail fast: one failed call decides (on_state_error), a retry loop would hold
            # the request instead.
            retry=Retry(NoBackoff(), 0),
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self._admit = self.client.register_script(_ADMIT)
        self._settle = self.client.register_script(_SETTLE)
        self._interval = settle_interval
        self._gate = asyncio.Semaphore(_MAX_IN_FLIGHT)
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
        except (RedisError, OSError):
            self._mark_down()

    async def aclose(self) -> None:
        """Send the settlements still waiting (if Redis answers), then disconnect."""
        for task in [*self._tasks, self._probe]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._pending and self.available:
            with contextlib.suppress(RedisError, OSError):
                await self._send(self._pending)
                self._pending = []
        await self.client.aclose()
        # A pool handed to the client is not closed with it.
        await self.client.connection_pool.aclose()

    # ------------------------------------------------------------------ admission

    async def admit(self, checks: list[Check], member: str, now: float) -> tuple[bool, list[int]]:
        """Reserve every check or none; ``(admitted, each counter before this call)``.
        Raises StateUnavailable when Redis does not answer."""
        if not self.available:
            raise StateUnavailable("the state store is unreachable")
        spec = " ".join([f"{c.kind}{c.limit},{c.cost},{c.ttl}" for c in checks])
        args = (int(now * 1000), member, spec)
        async with self._gate:
            if not self.available:  # went down while this call waited its turn
                raise StateUnavailable("the state store is unreachable")
            try:
                answer = await self._admit(keys=[c.key for c in checks], args=args)
            except (RedisError, OSError) as exc:
                self._mark_down(exc)
                raise StateUnavailable("the state store is unreachable") from None
        return answer[0] == 1, [int(v) for v in answer[1:]]

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
        except (RedisError, OSError) as exc:
            # Keep them for when Redis is back, ahead of newer ones, within the bound.
            room = max(0, _MAX_PENDING - len(self._pending))
            self.dropped += max(0, len(batch) - room)
            self._pending[:0] = batch[:room]
            self._mark_down(exc)

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
            await self._settle(keys=[key for key, _ in part], args=[spec for _, spec in part])

    # ------------------------------------------------------------------ health

    def _mark_down(self, exc: BaseException | None = None) -> None:
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
            except (RedisError, OSError):
                continue
            self.available = True
            log.warning("state store reachable again")
            if self._on_change is not None:
                self._on_change(True)
            self._wake.set()  # send the settlements that waited
            return
