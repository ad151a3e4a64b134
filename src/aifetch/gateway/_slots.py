"""An upstream's connections as slots, shared fairly between callers.

A call takes a slot before it reaches the upstream and gives it back when it is done with
the connection (a plain answer once read, a stream once relayed). At most
``max_connections`` calls hold one at once, so the client's pool never queues a call
where no deadline of ours would see it wait; at most ``max_connections_per_caller`` of
them belong to one caller, so one tenant's long streams cannot starve another's calls.
Waiting for a slot is a phase of its own (``timeout.pool``): past it the call gets 503
``upstream_busy``, not an upstream timeout, and goes to the next target.
"""

from __future__ import annotations

import asyncio
from collections import deque

from aifetch import AbortSignal

__all__ = ["Slot", "Slots"]


class Slot:
    """One held slot; ``release`` is idempotent."""

    __slots__ = ("_slots", "caller")

    def __init__(self, slots: Slots, caller: str) -> None:
        self._slots: Slots | None = slots
        self.caller = caller

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is None:
            return
        # Slots._give_back, inline: once per call.
        slots.busy -= 1
        by_caller = slots._by_caller
        left = by_caller[self.caller] - 1
        if left:
            by_caller[self.caller] = left
        else:
            del by_caller[self.caller]
        if slots._waiting:
            slots._grant()


class Slots:
    def __init__(self, size: int, per_caller: int) -> None:
        self.size = size
        self.per_caller = per_caller
        self.busy = 0
        self._by_caller: dict[str, int] = {}
        self._waiting: deque[tuple[str, asyncio.Future[None]]] = deque()

    def _free_for(self, caller: str) -> bool:
        return self.busy < self.size and self._by_caller.get(caller, 0) < self.per_caller

    def _hold(self, caller: str) -> Slot:
        self.busy += 1
        self._by_caller[caller] = self._by_caller.get(caller, 0) + 1
        return Slot(self, caller)

    def try_take(self, caller: str) -> Slot | None:
        """A slot for ``caller`` at once, if one is free for it (the usual case: no
        coroutine, no future). Whoever still waits while a slot is free waits for its
        caller's share, not for the pool (``_grant`` sees to that), so it is not passed
        over: a caller at its share never gets a slot here."""
        held = self._by_caller.get(caller, 0)
        if self.busy < self.size and held < self.per_caller:  # _hold, inline: once a call
            self.busy += 1
            self._by_caller[caller] = held + 1
            return Slot(self, caller)
        return None

    async def take(self, caller: str, wait: float | None, signal: AbortSignal) -> Slot | None:
        """A slot for ``caller``, or ``None`` when none came free within ``wait`` seconds.
        An abort of ``signal`` while waiting raises its error."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (caller, future)
        self._waiting.append(entry)
        handle = signal.add_listener(lambda _reason: _cancel_soon(future))
        try:
            # A slot granted as the wait runs out is still taken (wait_for returns it).
            await asyncio.wait_for(future, wait)
        except TimeoutError:
            return None
        except asyncio.CancelledError:
            signal.throw_if_aborted()  # the flight stopped: its error, not a cancellation
            raise
        finally:
            signal.remove_listener(handle)
            if entry in self._waiting:
                self._waiting.remove(entry)
        return Slot(self, caller)  # counted when it was granted

    def _grant(self) -> None:
        """Hand free slots to the first waiters whose caller is under its share (a caller
        at its share does not hold up the others behind it)."""
        for entry in list(self._waiting):
            if self.busy >= self.size:
                return
            caller, future = entry
            if future.done():
                self._waiting.remove(entry)
            elif self._by_caller.get(caller, 0) < self.per_caller:
                self._waiting.remove(entry)
                self._hold(caller)
                future.set_result(None)


def _cancel_soon(future: asyncio.Future[None]) -> None:
    # An abort may come from another thread: cancel on the future's own loop.
    loop = future.get_loop()
    loop.call_soon_threadsafe(lambda: future.done() or future.cancel())
