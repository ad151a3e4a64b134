"""What both async transports' exchanges share: one request from its send to the end of
its body (``_transport._Exchange`` on aiohttp, ``_lean_body.LeanExchange`` on the lean
transport).

One object serves both phases, with one abort listener and one deadline key. While
``sending`` (connect, pool wait, request, response head) an abort, from any thread, or the
first-byte deadline cancels the sending task; once the response head is in, the exchange
is the body source, and an abort or an expired read interrupts the read instead
(``interrupt``, each transport's own). Either way ``stop_reason`` says why it was stopped
early (``"abort"``, ``"timeout"``, ``"idle"``, ``"total"``, ``"closed"``), so the
cancellation or the interrupted read turns into the right error.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from .._abort import AbortSignal
from .._deadlines import Deadlines
from .._request import Request

__all__ = ["Exchange", "Phase"]

# Where an exchange is, as h11 keeps its states: its request is being sent, its body is
# being read, or it is over (the connection went back to the pool or was closed).
Phase = Literal["sending", "reading", "over"]


class Exchange:
    __slots__ = (
        "_deadline",
        "_idle",
        "_loop",
        "_request",
        "_signal",
        "_task",
        "_watch",
        "handle",
        "phase",
        "stop_reason",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        request: Request,
        signal: AbortSignal | None,
        watch: Deadlines[Any],
        idle: float | None,
    ) -> None:
        self._loop = loop
        self._task = asyncio.current_task(loop)
        self._request = request
        self._signal = signal
        self._idle = idle
        self._deadline = deadline = request.deadline
        # Only while a read waits: the idle gap is the server's silence, not the caller's.
        self._watch = watch if idle is not None or deadline is not None else None
        self.phase: Phase = "sending"
        self.stop_reason: str | None = None
        self.handle: int | None = None  # the abort listener, removed when the body ends

    @property
    def done(self) -> bool:
        """Nothing more to read (``BodySource``)."""
        return self.phase == "over"

    def interrupt(self, kind: str) -> None:
        """Stop a body read in progress (or the next one) for ``kind``."""
        raise NotImplementedError

    # --------------------------------------------------------------- sending

    def on_abort(self, _reason: Any) -> None:
        self._loop.call_soon_threadsafe(self._abort)

    def _abort(self) -> None:
        # Runs on the loop; send() calls received() right after it stops sending, with no
        # await in between, so one of the two phases is always there to take the abort
        # (and a send that failed leaves the exchange over: the abort finds nothing).
        if self.phase == "sending":
            self._stop("abort")
        else:
            self.interrupt("abort")

    def _stop(self, reason: str) -> None:
        # An abort may land after send() returned: the body handles it then, and
        # cancelling the caller's task here would hit an unrelated await.
        if self.phase == "sending" and self.stop_reason is None and self._task is not None:
            self.stop_reason = reason
            self._task.cancel()

    def caused_cancel(self) -> bool:
        """True when this exchange cancelled the task and no other cancellation is pending."""
        return (
            self.stop_reason is not None and self._task is not None and self._task.uncancel() == 0
        )

    def expire(self) -> None:
        """The first byte did not come in time, or a body read waited past the idle gap or
        the total deadline."""
        if self.phase == "sending":
            self._stop("timeout")
            return
        total = self._deadline is not None and self._deadline <= time.monotonic() + 0.001
        self.interrupt("total" if total else "idle")
