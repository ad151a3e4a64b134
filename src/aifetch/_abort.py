"""``AbortController`` and ``AbortSignal``, as in the DOM standard, usable across threads.

A signal holds listeners; ``abort()`` runs them once, in the thread that called it. The
transports register listeners that hop to their own loop or thread (``call_soon_threadsafe``,
socket shutdown), so aborting from another task or thread reaches a request in flight.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ._errors import AbortError, TimeoutError

__all__ = ["AbortController", "AbortSignal"]

Listener = Callable[[Any], None]


class AbortSignal:
    """Tells a request to stop. Made by an ``AbortController`` or by ``AbortSignal.timeout``."""

    __slots__ = ("_aborted", "_listeners", "_reason")

    def __init__(self) -> None:
        self._aborted = False
        self._reason: Any = None
        # Made on the first add_listener: a signal is made for every request, and most
        # requests register one listener, if any.
        self._listeners: dict[int, Listener] | None = None

    @property
    def aborted(self) -> bool:
        return self._aborted

    @property
    def reason(self) -> Any:
        return self._reason

    def throw_if_aborted(self) -> None:
        if self._aborted:
            raise self.error()

    def error(self) -> BaseException:
        """The exception a request stopped by this signal raises."""
        if isinstance(self._reason, TimeoutError):
            return self._reason
        return AbortError(reason=self._reason)

    def add_listener(self, listener: Listener) -> int | None:
        """Register ``listener(reason)``; returns a handle, or ``None`` (and calls nothing)
        when the signal has already fired: the caller checks ``aborted`` itself then."""
        with _lock:
            if self._aborted:
                return None
            handle = next(_handles)
            if self._listeners is None:
                self._listeners = {handle: listener}
            else:
                self._listeners[handle] = listener
            return handle

    def remove_listener(self, handle: int | None) -> None:
        if handle is not None:
            with _lock:
                listeners = self._listeners
                if listeners is not None:  # None once fired
                    listeners.pop(handle, None)

    def _fire(self, reason: Any) -> None:
        with _lock:
            if self._aborted:
                return
            self._aborted = True
            self._reason = reason
            listeners = list(self._listeners.values()) if self._listeners else []
            self._listeners = None
        for listener in listeners:
            listener(reason)

    @staticmethod
    def timeout(seconds: float) -> AbortSignal:
        """A signal that aborts by itself after ``seconds``, with a ``TimeoutError`` reason."""
        signal = AbortSignal()
        _scheduler.call_later(
            seconds,
            lambda: signal._fire(
                TimeoutError(f"the signal's {seconds:g} s timeout ran out", phase="total")
            ),
        )
        return signal

    @staticmethod
    def any(signals: Iterable[AbortSignal]) -> AbortSignal:
        """A signal that aborts as soon as any of ``signals`` does, with that one's reason."""
        combined = AbortSignal()
        for source in signals:
            if source.aborted:
                combined._fire(source.reason)
                break
            source.add_listener(combined._fire)
        return combined

    def __repr__(self) -> str:
        return f"AbortSignal(aborted={self._aborted})"


class AbortController:
    """Owns one ``signal``; ``abort(reason)`` fires it (from any thread, at most once)."""

    __slots__ = ("signal",)

    def __init__(self) -> None:
        self.signal = AbortSignal()

    def abort(self, reason: Any = None) -> None:
        self.signal._fire(reason)


_handles = itertools.count(1)
# One lock for every signal's listeners (held only for a dict update, never while a
# listener runs): a lock per signal cost an allocation on every request.
_lock = threading.Lock()


class _Scheduler:
    """One daemon thread for every ``AbortSignal.timeout``, started on first use, so a
    thousand timed signals cost a heap entry each rather than a thread each."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._seq = itertools.count()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="aifetch-signal-timers", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                when, _, fn = self._heap[0]
                wait = when - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            fn()


_scheduler = _Scheduler()
