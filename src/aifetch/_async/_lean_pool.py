"""The lean transport's connections: one ``asyncio.Protocol`` per socket, kept alive in a
small pool per origin (``_lean.py`` sends on them, ``_lean_body.py`` reads from them).

A connection carries one exchange at a time (no pipelining): it hands every byte it
receives to that exchange, and goes back to the pool when the exchange has read its whole
response and the server keeps the connection open (RFC 9112 §9.3).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, cast

__all__ = ["Connection", "Occupant", "Pool"]

Origin = tuple[str, str, int]


class Occupant(Protocol):
    """What a connection hands its bytes to: the exchange using it (``_lean_body``)."""

    def feed(self, data: bytes) -> None: ...
    def lost(self, exc: BaseException | None) -> None: ...


class Connection(asyncio.Protocol):
    """One socket to one origin. ``occupant`` is the exchange using it (``None`` while idle)."""

    __slots__ = (
        "_drained",
        "_gone",
        "dead",
        "idle_since",
        "occupant",
        "origin",
        "pool",
        "transport",
    )

    def __init__(self, pool: Pool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.occupant: Occupant | None = None
        self.dead = False
        self.idle_since = 0.0
        # Set while the socket's write buffer is above its high mark (``pause_writing``).
        self._drained: asyncio.Future[None] | None = None
        # Made when someone waits for the socket to be gone (``gone``); None before.
        self._gone: asyncio.Future[None] | None = None

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport: no isinstance).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        occupant = self.occupant
        if occupant is not None:
            occupant.feed(data)
        else:
            # Bytes nobody asked for (a server's 408 on an idle connection, say): the
            # connection's state is unknown, so it is not reused (RFC 9112 §9.3).
            self.close()

    def eof_received(self) -> bool:
        return False  # the transport closes itself; connection_lost tells the occupant

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.dead:
            self.dead = True
            self.pool.discard(self)
        self.transport = None
        gone = self._gone
        if gone is not None and not gone.done():
            gone.set_result(None)
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)  # the writer finds the connection gone
        occupant, self.occupant = self.occupant, None
        if occupant is not None:
            occupant.lost(exc)

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # ---------------------------------------------------------------- for the exchange

    async def drain(self) -> None:
        """Wait while the socket's write buffer is full (a streamed request body)."""
        drained = self._drained
        if drained is not None:
            await drained

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.dead:
            self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.dead:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.dead:
            self.transport.resume_reading()

    def close(self) -> None:
        """Close the socket; it leaves the pool's count at once, not when the loop gets
        round to ``connection_lost``, so a waiting request can open its own now."""
        self.occupant = None
        if not self.dead:
            self.dead = True
            self.pool.discard(self)
        if self.transport is not None:
            self.transport.close()

    def gone(self) -> asyncio.Future[None] | None:
        """A future done once the socket is closed (``None`` when it already is): a
        client's ``aclose`` waits for it, as aiohttp's does, so nothing is left open."""
        if self.transport is None:
            return None
        if self._gone is None:
            self._gone = asyncio.get_running_loop().create_future()
        return self._gone

    def release(self) -> None:
        """The exchange is done with it and the server keeps it open: back to the pool."""
        self.occupant = None
        if self.dead or self.transport is None or self.transport.is_closing():
            self.close()
        else:
            self.pool.park(self)


class Pool:
    """Open connections by origin, at most ``limit`` in all (0: no limit) and ``per_host``
    to one origin (0: no limit). An idle connection is kept ``keepalive`` seconds."""

    __slots__ = (
        "_all",
        "_closed",
        "_idle",
        "_loop",
        "_per_origin",
        "_sweep",
        "_waiters",
        "keepalive",
        "limit",
        "per_host",
    )

    def __init__(self, limit: int, per_host: int, keepalive: float) -> None:
        self.limit = limit
        self.per_host = per_host
        self.keepalive = keepalive
        self._all: set[Connection] = set()  # open, idle or in use
        self._idle: dict[Origin, list[Connection]] = {}
        # Connections counted per origin, those being opened included.
        self._per_origin: dict[Origin, int] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._sweep: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def _count(self) -> int:
        return sum(self._per_origin.values())

    def take(self, origin: Origin) -> Connection | None:
        """An idle connection to ``origin`` (the most recently used: the likeliest to be
        still open at the server), or ``None``."""
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.dead and conn.transport is not None and not conn.transport.is_closing():
                return conn
            conn.close()
        return None

    async def reserve(self, origin: Origin) -> Connection | None:
        """An idle connection to ``origin``, or ``None`` once there is room to open one
        (the room is counted from now: ``opened`` or ``failed`` must follow). Waits while
        the pool is full; the caller's deadlines bound the wait."""
        while True:
            conn = self.take(origin)
            if conn is not None:
                return conn
            if self._room_for(origin):
                self._per_origin[origin] = self._per_origin.get(origin, 0) + 1
                return None
            if not self._close_one_idle():
                await self._wait()

    def _room_for(self, origin: Origin) -> bool:
        if self.per_host and self._per_origin.get(origin, 0) >= self.per_host:
            return False
        return not self.limit or self._count() < self.limit

    def _close_one_idle(self) -> bool:
        """Make room under the overall limit by closing an idle connection to another
        origin (the caller found none to its own)."""
        if not self.limit or self._count() < self.limit:
            return False
        for idle in self._idle.values():
            if idle:
                idle.pop(0).close()  # the least recently used
                return True
        return False

    async def _wait(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        # Every waiter looks again: there are few, and each knows what it waits for (an
        # origin, and room under two limits).
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def opened(self, conn: Connection) -> None:
        self._all.add(conn)
        if self._closed:
            conn.close()

    def failed(self, origin: Origin) -> None:
        """A reserved connection could not be opened: its room is free again."""
        self._uncount(origin)
        self._wake()

    def discard(self, conn: Connection) -> None:
        """``conn`` is closed (by either side): it no longer counts."""
        if conn in self._all:
            self._all.discard(conn)
            self._uncount(conn.origin)
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:
            idle.remove(conn)
        self._wake()

    def _uncount(self, origin: Origin) -> None:
        left = self._per_origin.get(origin, 0) - 1
        if left > 0:
            self._per_origin[origin] = left
        else:
            self._per_origin.pop(origin, None)

    def park(self, conn: Connection) -> None:
        if self._closed:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.origin, []).append(conn)
        if self._waiters:
            self._wake()
        if self._sweep is None:
            self._schedule(self.keepalive)

    def _schedule(self, delay: float) -> None:
        # One timer for every idle connection, not one per release (a timer handle made
        # and cancelled per request costs microseconds: see aifetch._deadlines).
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        self._sweep = loop.call_later(delay, self._expire_idle)

    def _expire_idle(self) -> None:
        self._sweep = None
        now = time.monotonic()
        oldest = now
        for idle in list(self._idle.values()):
            for conn in list(idle):
                if conn.idle_since + self.keepalive <= now:
                    conn.close()
                else:
                    oldest = min(oldest, conn.idle_since)
        if any(self._idle.values()):
            self._schedule(max(0.01, oldest + self.keepalive - now))

    def close(self) -> list[asyncio.Future[None]]:
        """Close every connection, in use or idle (``aclose`` of the client); what to
        wait for until their sockets are gone. A response being read fails."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        gone = []
        for conn in list(self._all):
            occupant = conn.occupant
            if (future := conn.gone()) is not None:
                gone.append(future)
            conn.close()
            if occupant is not None:
                occupant.lost(ConnectionAbortedError("the client was closed"))
        self._idle.clear()
        self._wake()
        return gone

    def census(self) -> tuple[int, int]:
        """(connections in use, idle connections): what a leak check counts."""
        idle = sum(len(conns) for conns in self._idle.values())
        return len(self._all) - idle, idle
