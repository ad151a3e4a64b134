"""The caller's side of one streamed response, and the heartbeat that keeps it open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aifetch.sse import encode_comment

from ._context import Send

__all__ = ["PING", "SSE_HEADERS", "Downstream", "heartbeat"]

PING = encode_comment("ping")
# text/event-stream is never cached, and a proxy in front must not buffer it.
SSE_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


class Downstream:
    """Where a stream goes: its response start (once), its writes, its end.

    ``on_gap`` sees the seconds between two writes of content (one per upstream read that
    completes an event; pings between them do not count); the heartbeat reads ``last``,
    the time of any write, to know when the line went quiet.
    """

    __slots__ = ("begun", "early_headers", "last", "last_content", "on_gap", "send", "started")

    def __init__(
        self,
        send: Send,
        early_headers: list[tuple[bytes, bytes]],
        on_gap: Callable[[float], None] | None = None,
    ) -> None:
        self.send = send
        self.started = False
        self.begun = self.last = time.monotonic()
        self.last_content: float | None = None
        # Headers for a commit forced by a heartbeat before the first content event.
        self.early_headers = early_headers
        self.on_gap = on_gap

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if self.started:
            return
        self.started = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, data: bytes) -> None:
        now = time.monotonic()
        if self.on_gap is not None and self.last_content is not None:
            self.on_gap(now - self.last_content)
        self.last = self.last_content = now
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def ping(self) -> None:
        self.last = time.monotonic()
        await self.send({"type": "http.response.body", "body": PING, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": False})


async def heartbeat(down: Downstream, interval: float) -> None:
    """Send ``: ping`` whenever ``interval`` seconds pass without a write.

    Before the first content event this commits the response early (200, event stream):
    a load balancer would otherwise cut a slow first token. Fallback still works after
    such a commit (no content was sent), but a final failure then arrives as an SSE error
    event instead of an HTTP status.
    """
    while True:
        wait = down.last + interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
            continue
        if not down.started:
            # Server-Timing on an early commit: how long the gateway had waited so far.
            waited = b"wait;dur=%.3f" % ((time.monotonic() - down.begun) * 1000)
            await down.start(200, [*down.early_headers, (b"server-timing", waited)])
        await down.ping()
