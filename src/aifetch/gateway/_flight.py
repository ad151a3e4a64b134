"""Calls in flight, stoppable from outside: the caller went away, or shutdown came.

A ``Flight`` is one model call's abort controller and its disconnect watch. ``Flights`` is
the set of them the app keeps, for shutdown and for one sweep, a few times a second while
any call runs, that starts the disconnect watch of calls that have run for a while and
the heartbeat of streams that went quiet. A task or a timer per call cost more than the
code in it (bench/README.md), and most calls end before either is needed.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from aifetch import AbortController, AbortSignal

from ._context import Receive

if TYPE_CHECKING:
    from ._call import StreamSource
    from ._downstream import Downstream

__all__ = ["Flight", "Flights"]

# A non-stream call starts watching for its caller's disconnect once it has run this long
# (checked by a sweep at this interval, so within twice this). Most calls end sooner and
# never pay for a task; a timer or a deadline entry per call cost more (bench/README.md).
WATCH_AFTER = 0.25


class Flight(AbortController):
    """One call in flight.

    ``reason`` is ``None`` while the call runs, then ``"disconnect"`` or ``"shutdown"``.
    The flight is the abort controller of every upstream attempt of its call: stopping it
    aborts the attempt in progress unless the model drains, and a stopped flight makes no
    further attempt. It also watches for its caller's disconnect, stream or not, once the
    call has run for a while (``watch_later``; the sweep calls ``watch_now``): most calls
    end sooner and never pay for a watch task.
    """

    __slots__ = (
        "_event",
        "_receive",
        "_watcher",
        "down",
        "drain",
        "opened",
        "reason",
        "started",
    )

    def __init__(self, drain: bool, started: float) -> None:
        self.signal = AbortSignal()  # AbortController's own state, without a super() call
        self.reason: str | None = None
        self.drain = drain
        self.started = started  # time.perf_counter() when the request arrived
        self._event: Any = None
        self._receive: Receive | None = None
        self._watcher: asyncio.Task[None] | None = None
        # Upstream streams this call opened: each is closed by whoever relays it, and at
        # the latest when the call ends (a pipe may drop one), so no connection or slot
        # outlives its call.
        self.opened: list[StreamSource] | None = None
        self.down: Downstream | None = None  # a stream's caller side, for its heartbeat

    def opened_stream(self, source: StreamSource) -> None:
        if self.opened is None:
            self.opened = []
        self.opened.append(source)

    async def close_opened(self) -> None:
        for source in self.opened or ():
            await source.close()

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            if self._event is not None:
                self._event.set()
        # A drained call keeps reading after the caller left (for usage); a shutdown
        # always ends it, draining or not.
        if reason == "shutdown" or not self.drain:
            self.abort(reason)

    async def watch(self, receive: Receive) -> None:
        """Stop the flight when the caller goes away (ASGI ``http.disconnect``)."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.stop("disconnect")
                return

    def watch_later(self, receive: Receive) -> None:
        """Have ``watch_now`` start ``watch`` with ``receive``, unless ``end_watch`` comes
        first."""
        self._receive = receive

    def watch_now(self) -> None:
        receive, self._receive = self._receive, None
        if receive is not None:
            self._watcher = asyncio.ensure_future(self.watch(receive))

    def end_watch(self) -> None:
        self._receive = None
        if self._watcher is not None:
            self._watcher.cancel()

    async def pause(self, delay: float) -> bool:
        """Sleep ``delay`` seconds; ``False`` if the flight was stopped meanwhile."""
        if self.reason is not None:
            return False
        if self._event is None:
            self._event = asyncio.Event()
        try:
            await asyncio.wait_for(self._event.wait(), delay)
        except TimeoutError:
            return True
        return False


class Flights:
    """The calls in flight: refused once closing, stopped at the end of shutdown, and
    swept while any runs (every ``WATCH_AFTER`` seconds, or a quarter of the heartbeat
    interval when that is shorter).

    A stream gets its ping at the first sweep that finds it quiet for the interval less
    one sweep period, so no stream is quiet for longer than the interval. Sweeping once
    per interval and waiting for a full interval of quiet would let a stream go quiet for
    up to twice the interval: a ping sent just after one sweep is not yet an interval old
    at the next."""

    def __init__(self, heartbeat: float = 0.0) -> None:
        self._flights: set[Flight] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self.closing = False
        self.heartbeat = heartbeat  # seconds a stream may be quiet; 0 = no heartbeat
        self.every = min(WATCH_AFTER, heartbeat / 4) if heartbeat > 0 else WATCH_AFTER
        self._quiet = heartbeat - self.every  # how quiet a stream is when a sweep pings it

    def __len__(self) -> int:
        return len(self._flights)

    def add(self, flight: Flight) -> None:
        self._flights.add(flight)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self.every, self._run_sweep)

    def discard(self, flight: Flight) -> None:
        self._flights.discard(flight)

    def _run_sweep(self) -> None:
        """Start the disconnect watch of calls that have run for ``WATCH_AFTER``, and a
        heartbeat for each stream quiet for the heartbeat interval."""
        self._sweep = None
        if not self._flights:
            return
        ran_long = time.perf_counter() - WATCH_AFTER
        now, interval, quiet = time.monotonic(), self.heartbeat, self._quiet
        for flight in self._flights:
            if flight.started <= ran_long:
                flight.watch_now()
            down = flight.down
            if down is not None and interval > 0 and down.due(now, quiet):
                down.beating = True  # one beat at a time, even before its task runs
                down.beat_task = asyncio.ensure_future(down.beat())
        self._sweep = asyncio.get_running_loop().call_later(self.every, self._run_sweep)

    def close(self, grace: float) -> None:
        """Refuse new calls; stop the ones still running after ``grace`` seconds."""
        self.closing = True
        asyncio.get_running_loop().call_later(grace, self.stop_all)

    def stop_all(self) -> None:
        for flight in list(self._flights):
            flight.stop("shutdown")

    def cancel_sweep(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
