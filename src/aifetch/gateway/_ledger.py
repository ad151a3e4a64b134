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
from ._usage import Usage
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


class LedgerRows:
    """Writes each finished model call's row (``emit``)."""

    def __init__(self, governor: Governor) -> None:
        assert governor.ledger is not None
        self.record = governor.ledger.record  # an append to the bounded buffer
        self.cost = governor.cost

    def emit(self, ctx: RequestContext) -> None:
        fields = ctx.fields
        if fields is None:  # not a model call, or refused before its body was read
            return
        took = time.perf_counter() - ctx.started
        usage = ctx.usage or _NONE
        who = ctx.identity
        model = ctx.model or fields.model
        ttft = ctx.ttft
        self.record(
            LedgerRow(
                ts=time.time() - took,
                request_id=ctx.request_id,
                caller=ctx.caller_name,
                key_name=None if who is None else who.key_name,
                model=model,
                upstream=ctx.upstream,
                dialect=ctx.dialect,
                stream=ctx.stream or bool(fields.stream),
                status=ctx.status,
                duration_ms=round(took * 1000, 3),
                ttft_ms=None if ttft is None else round(ttft * 1000, 3),
                error=ctx.error,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cached_tokens=usage.cached_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                cost_nano_usd=self.cost(model, usage) if usage is not _NONE else 0,
            )
        )


_NONE = Usage()
