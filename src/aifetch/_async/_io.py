"""Waiting, the async way; ``_sync/_io.py`` is its hand-written twin."""

from __future__ import annotations

import asyncio

from .._abort import AbortSignal

__all__ = ["sleep"]


async def sleep(seconds: float, signal: AbortSignal | None) -> None:
    """Sleep, but wake and raise at once if ``signal`` aborts (from any thread)."""
    if seconds <= 0:
        return
    if signal is None:
        await asyncio.sleep(seconds)
        return
    signal.throw_if_aborted()
    loop = asyncio.get_running_loop()
    woken = loop.create_future()

    def set_woken() -> None:
        if not woken.done():
            woken.set_result(None)

    def wake(_reason: object) -> None:
        loop.call_soon_threadsafe(set_woken)

    handle = signal.add_listener(wake)
    try:
        await asyncio.wait_for(asyncio.shield(woken), seconds)
    except TimeoutError:
        pass
    finally:
        signal.remove_listener(handle)
    signal.throw_if_aborted()
