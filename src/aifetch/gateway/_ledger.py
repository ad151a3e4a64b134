"""The usage ledger's side of the request path, at the ASGI edge beside the access log:
the row each model call leaves once it is over, and the request id an error answer
carries.

- ``emit``: one row per model call (every request whose body was read, refused ones
  included), built from the finished context and handed to the ledger's ``record``, an
  append to a bounded buffer that a background writer empties in batches. Nothing here
  waits, and nothing runs per stream chunk.
- ``tag``: the gateway's own error answers (a refusal, an upstream failure) carry
  ``x-aifetch-request-id``, the id of the call's ledger row, which is what a caller quotes
  to find it; the access log line names it too. A successful answer does not carry it:
  one more header cost ~7.6k instructions a request served (~1.2 %, most of it uvicorn's
  checks of each header; bench/README.md, governance), which the limits' own headers
  already spend much of. Without a ledger no id is made at all.
"""

from __future__ import annotations

import time

from ._context import RequestContext
from ._usage import Usage
from .governance import Governor, LedgerRow

__all__ = ["REQUEST_ID_HEADER", "LedgerRows"]

REQUEST_ID_HEADER = b"x-aifetch-request-id"


class LedgerRows:
    """Writes each finished model call's row (``emit``); names it on error answers
    (``tag``)."""

    def __init__(self, governor: Governor) -> None:
        assert governor.ledger is not None
        self.record = governor.ledger.record  # an append to the bounded buffer
        self.cost = governor.cost

    def tag(self, ctx: RequestContext) -> None:
        """Before an error answer: its request id among the answer's headers."""
        if ctx.fields is not None:  # a model call: it will have a row
            # A new list: CORS's may be shared by every request from one origin.
            header = (REQUEST_ID_HEADER, ctx.request_id.encode())
            ctx.answer_headers = [*ctx.answer_headers, header]

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
