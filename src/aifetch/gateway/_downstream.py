"""The caller's side of one streamed response, and the heartbeat that keeps it open.

There is no heartbeat task per stream: the sweep over the calls in flight (``_flight``)
asks each stream whether it went quiet (``due``) and only then starts a ``beat``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aifetch.sse import encode_comment

from ._context import Send

__all__ = ["PING", "SSE_HEADERS", "Downstream"]

PING = encode_comment("ping")
# text/event-stream is never cached, and a proxy in front must not buffer it.
SSE_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


class Downstream:
    """Where a stream goes: its response start (once), its writes, its end.

    ``on_gap`` sees the seconds between two writes of content (one per upstream read that
    completes an event; pings between them do not count); the heartbeat reads ``last``,
    the time of any write, to know when the line went quiet.
    """

    __slots__ = (
        "beat_task",
        "beating",
        "begun",
        "early_headers",
        "ended",
        "last",
        "last_content",
        "on_gap",
        "send",
        "started",
    )

    def __init__(
        self,
        send: Send,
        early_headers: list[tuple[bytes, bytes]],
        on_gap: Callable[[float], None] | None = None,
    ) -> None:
        self.send = send
        self.started = self.ended = self.beating = False
        self.beat_task: Any = None  # the beat on its way (kept: a task must be referenced)
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
        self.ended = True
        await self.send({"type": "http.response.body", "body": data, "more_body": False})

    def due(self, now: float, interval: float) -> bool:
        """Has the stream been quiet for ``interval`` seconds (and no beat is on its way)?"""
        return not (self.beating or self.ended) and now - self.last >= interval

    async def beat(self) -> None:
        """Send ``: ping``.

        Before the first content event this commits the response early (200, event
        stream): a load balancer would otherwise cut a slow first token. Fallback still
        works after such a commit (no content was sent), but a final failure then arrives
        as an SSE error event instead of an HTTP status.
        """
        self.beating = True
        try:
            if self.ended:
                return
            if not self.started:
                # Server-Timing on an early commit: how long the gateway had waited so far.
                waited = b"wait;dur=%.3f" % ((time.monotonic() - self.begun) * 1000)
                await self.start(200, [*self.early_headers, (b"server-timing", waited)])
            await self.ping()
        finally:
            self.beating = False
