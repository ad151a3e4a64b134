"""The usage ledger's side of the request path: the request id a model call's answer
carries, and the row the call leaves once it is over.

- ``TagRequest``, a stage right after the body is read: the answer (error or not) gets
  ``x-aifetch-request-id``, the id of the call's ledger row, which is what a caller
  quotes to find it. Only with a ledger: without one no id is made and no header sent,
  so a gateway without governance pays nothing for it.
- ``LedgerRows``, at the ASGI edge beside the access log: one row per model call (every
  request whose body was read, refused ones included), built from the finished context
  and handed to ``Governor.record``, an append to a bounded buffer that a background
  writer empties in batches. Nothing here waits, and nothing runs per stream chunk.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable

from ._context import Handler, RequestContext
from .governance import Governor, LedgerRow

__all__ = ["REQUEST_ID_HEADER", "LedgerRows", "TagRequest"]

REQUEST_ID_HEADER = b"x-aifetch-request-id"


class TagRequest:
    """Give the answer the request's id (in the path only when there is a ledger)."""

    next: Handler

    def __call__(self, ctx: RequestContext) -> Awaitable[None]:
        # A new list: CORS's may be shared by every request from one origin.
        ctx.answer_headers = [*ctx.answer_headers, (REQUEST_ID_HEADER, ctx.request_id.encode())]
        return self.next(ctx)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class LedgerRows:
    """Writes each finished model call's row (``emit``)."""

    def __init__(self, governor: Governor) -> None:
        self.governor = governor

    def emit(self, ctx: RequestContext) -> None:
        fields = ctx.fields
        if fields is None:  # not a model call, or refused before its body was read
            return
        took = time.perf_counter() - ctx.started
        usage = ctx.usage
        who = ctx.identity
        model = ctx.model or fields.model
        row = LedgerRow(
            ts=time.time() - took,
            request_id=ctx.request_id,
            caller=ctx.caller_name,
            key_name=None if who is None else who.key_name,
            model=model,
            upstream=ctx.upstream,
            dialect=ctx.dialect,
            stream=ctx.stream or bool(fields.stream),
            status=ctx.status,
            duration_ms=_ms(took),
            ttft_ms=None if ctx.ttft is None else _ms(ctx.ttft),
            error=ctx.error,
        )
        if usage is not None:
            row.prompt_tokens = usage.prompt_tokens
            row.completion_tokens = usage.completion_tokens
            row.cached_tokens = usage.cached_tokens
            row.reasoning_tokens = usage.reasoning_tokens
            row.cost_nano_usd = self.governor.cost(model, usage)
        self.governor.record(row)
