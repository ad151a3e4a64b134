"""One structured JSON line per request, on the ``aifetch.gateway.access`` logger.

Written from the request's context once it is answered. Only gateway-side facts are
logged: the path without its query, the public model, the caller's *name*, the upstream's
*name*, status, timings, token counts and an error code. No header, key, body or upstream
URL is ever part of a record.
"""

from __future__ import annotations

import logging
import time

import msgspec

from ._context import RequestContext

__all__ = ["AccessLog", "AccessRecord"]


class AccessRecord(msgspec.Struct, omit_defaults=True):
    method: str
    path: str
    ts: float = 0.0
    request_id: str | None = None  # the ledger row's, when there is a ledger
    status: int = 0
    model: str | None = None
    caller: str | None = None
    upstream: str | None = None
    dialect: str = ""
    stream: bool = False
    duration_ms: float = 0.0
    upstream_ms: float | None = None
    ttft_ms: float | None = None
    retries: int = 0
    fallbacks: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    error: str | None = None


_encode = msgspec.json.Encoder().encode


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class AccessLog:
    def __init__(self, enabled: bool, logger: str = "aifetch.gateway.access") -> None:
        self.enabled = enabled
        self.logger = logging.getLogger(logger)

    def active(self) -> bool:
        return self.enabled and self.logger.isEnabledFor(logging.INFO)

    def emit(self, ctx: RequestContext) -> None:
        usage = ctx.usage
        record = AccessRecord(
            method=ctx.method,
            path=ctx.path,
            ts=round(time.time(), 3),
            request_id=ctx.request_id_made,
            status=ctx.status,
            model=ctx.model,
            caller=ctx.caller_name,
            upstream=ctx.upstream,
            dialect=ctx.dialect,
            stream=ctx.stream,
            duration_ms=_ms(time.perf_counter() - ctx.started),
            upstream_ms=_ms(ctx.upstream_time) if ctx.upstream or ctx.upstream_time else None,
            ttft_ms=_ms(ctx.ttft) if ctx.ttft is not None else None,
            retries=ctx.retries,
            fallbacks=ctx.fallbacks,
            prompt_tokens=usage.prompt_tokens if usage is not None else None,
            completion_tokens=usage.completion_tokens if usage is not None else None,
            cached_tokens=usage.cached_tokens if usage is not None else None,
            reasoning_tokens=usage.reasoning_tokens if usage is not None else None,
            error=ctx.error,
        )
        self.logger.info(_encode(record).decode())
