"""Times typed by people: ``--since 24h``, ``--expires 30d`` or an ISO 8601 date."""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["parse_instant", "parse_span"]

_SPAN = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d|w)", re.ASCII)
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_span(text: str) -> float:
    """``90s``, ``30m``, ``24h``, ``7d``, ``2w`` → seconds; ValueError otherwise."""
    match = _SPAN.fullmatch(text.strip())
    if not match:
        raise ValueError(f"expected a span like 30m, 24h or 7d, got {text!r}")
    return float(match.group(1)) * _UNIT[match.group(2)]


def parse_instant(text: str, now: float, *, future: bool) -> float:
    """A span from ``now`` (ahead when ``future``, back otherwise) or an ISO 8601 date or
    date-time (UTC unless it names a zone) → seconds since the epoch."""
    try:
        span = parse_span(text)
    except ValueError:
        pass
    else:
        return now + span if future else now - span
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"expected a span (30m, 24h, 7d) or a date (2025-01-31, 2025-01-31T12:00), got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
