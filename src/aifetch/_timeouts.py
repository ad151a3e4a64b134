"""Timeouts by phase, and the deadline that the ``total`` phase sets."""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["DEFAULT_TIMEOUT", "Timeout", "TimeoutInit", "to_timeout"]


@dataclass(frozen=True, slots=True)
class Timeout:
    """Seconds allowed for each phase of a request; ``None`` means no limit for that phase.

    - ``connect``: opening the connection (TCP and TLS).
    - ``first_byte``: from sending the request until the response headers have arrived.
      Models can think for minutes before their first token, so the default is generous.
    - ``idle``: the longest gap between two body reads: this is the one that catches a
      stalled stream, where ``first_byte`` and ``total`` would wait far too long.
    - ``total``: a deadline over the whole call, retries and their waits included.
    """

    connect: float | None = 10.0
    first_byte: float | None = 600.0
    idle: float | None = 300.0
    total: float | None = None

    def __post_init__(self) -> None:
        for name in ("connect", "first_byte", "idle", "total"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"Timeout.{name} must be positive or None, got {value!r}")

    def deadline(self, now: float | None = None) -> float | None:
        """The monotonic time at which ``total`` runs out, if it is set."""
        if self.total is None:
            return None
        return (time.monotonic() if now is None else now) + self.total


TimeoutInit = Timeout | float | int | None

DEFAULT_TIMEOUT = Timeout()
NO_TIMEOUT = Timeout(connect=None, first_byte=None, idle=None, total=None)


def to_timeout(value: TimeoutInit) -> Timeout:
    """A bare number is a limit on every phase but ``total``; ``None`` disables them all."""
    if isinstance(value, Timeout):
        return value
    if value is None:
        return NO_TIMEOUT
    seconds = float(value)
    return Timeout(connect=seconds, first_byte=seconds, idle=seconds, total=None)
