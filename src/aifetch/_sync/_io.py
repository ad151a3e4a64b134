"""Waiting, the blocking way; the twin of ``_async/_io.py``."""

from __future__ import annotations

import threading
import time

from .._abort import AbortSignal

__all__ = ["sleep"]


def sleep(seconds: float, signal: AbortSignal | None) -> None:
    """Sleep, but wake and raise at once if ``signal`` aborts (from any thread)."""
    if seconds <= 0:
        return
    if signal is None:
        time.sleep(seconds)
        return
    signal.throw_if_aborted()
    woken = threading.Event()
    handle = signal.add_listener(lambda _reason: woken.set())
    try:
        woken.wait(seconds)
    finally:
        signal.remove_listener(handle)
    signal.throw_if_aborted()
