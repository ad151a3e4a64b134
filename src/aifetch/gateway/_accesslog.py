"""One structured JSON line per request, on the ``aifetch.gateway.access`` logger.

Only gateway-side facts are logged: the path without its query, the public model, the
caller's *name*, the upstream's *name*, status, timings, token counts and an error code.
No header, key, body or upstream URL is ever part of a record.
"""

from __future__ import annotations

import logging
import time

import msgspec

__all__ = ["AccessLog", "AccessRecord"]


class AccessRecord(msgspec.Struct, omit_defaults=True):
    method: str
    path: str
    ts: float = 0.0
    status: int = 0
    model: str | None = None
    caller: str | None = None
    upstream: str | None = None
    stream: bool = False
    duration_ms: float = 0.0
    upstream_ms: float | None = None
    ttft_ms: float | None = None
    retries: int = 0
    fallbacks: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None


_encode = msgspec.json.Encoder().encode


class AccessLog:
    def __init__(self, enabled: bool, logger: str = "aifetch.gateway.access") -> None:
        self.enabled = enabled
        self.logger = logging.getLogger(logger)

    def active(self) -> bool:
        return self.enabled and self.logger.isEnabledFor(logging.INFO)

    def emit(self, record: AccessRecord, started: float) -> None:
        record.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        record.ts = round(time.time(), 3)
        self.logger.info(_encode(record).decode())
