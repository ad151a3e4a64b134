"""The limits stage: reserve a call's share of its caller's limits before any upstream is
called; and its settlement, exactly once, when the call is over.

It runs after the body is read (the estimate needs its size and ``max_tokens``) and
before the model call. A caller without limits passes through; a limited one is admitted
(memory state decides at once; Redis takes one script call), or refused with 429 and the
``x-ratelimit-*`` and ``Retry-After`` headers (503 ``state_unavailable`` when Redis is away
and ``on_state_error`` is ``closed``). The admission rides on the context and its
``x-ratelimit-*`` headers on the answer.

The ASGI edge settles it once the request is over, whatever ended it (an answer sent, a
stream ended or cut, an upstream failure, the caller gone, even a cancelled task: it is a
``finally`` there), beside the access log and the ledger row. Settling there rather than
in a ``finally`` here leaves this stage a plain ``def`` for memory state: no coroutine
frame per call (bench/README.md, governance). ``Governor.settle`` never waits, and sends
nothing per chunk.

What the settlement counts is ``spent(ctx)``: the usage the upstream reported; else, for
a call that got an answer whose usage never came (a stream cut before its usage chunk),
nothing known, so the reservation stands as its cost; else (refused before an upstream,
or no upstream answered with content) nothing was used and the reservation is released.
"""

from __future__ import annotations

from collections.abc import Awaitable

from ._call import STREAMING_ROUTES
from ._context import Handler, RequestContext
from ._usage import Usage
from .governance import Estimate, Governor, Identity

__all__ = ["Limits", "spent"]

_EMBEDDINGS = "/v1/embeddings"
# Settles a call that used nothing: its tokens and spend reservations are given back.
_NOTHING = Usage()


def spent(ctx: RequestContext) -> Usage | None:
    """What the call in ``ctx`` used, as far as the gateway knows once it is over:
    a ``Usage``, or ``None`` when it used an unknown amount (its reservation stands)."""
    if ctx.usage is not None:
        return ctx.usage
    if ctx.stream:
        # Content reached the caller only past the commit point.
        return None if ctx.ttft is not None else _NOTHING
    # A plain answer from an upstream without usage in it; an error answer costs nothing.
    return None if ctx.upstream is not None and 200 <= ctx.status < 300 else _NOTHING


class Limits:
    next: Handler

    def __init__(self, governor: Governor) -> None:
        self.governor = governor

    def __call__(self, ctx: RequestContext) -> Awaitable[None]:
        who = ctx.identity
        if who is None or not who.limited:
            return self.next(ctx)
        fields = ctx.fields
        assert fields is not None  # ReadBody ran
        model = ctx.model
        assert model is not None
        estimate = self.governor.estimate(
            len(ctx.body),
            fields.output_cap,
            fields.n,
            ctx.route == _EMBEDDINGS,
        )
        stream = bool(fields.stream) and ctx.route in STREAMING_ROUTES
        admission = self.governor.admit_now(who, model, estimate, stream)
        if admission is None:  # a Redis call
            return self._admit_shared(ctx, who, model, estimate, stream)
        ctx.admission = admission
        if admission.headers:
            _add_headers(ctx, admission.headers)
        return self.next(ctx)

    async def _admit_shared(
        self, ctx: RequestContext, who: Identity, model: str, estimate: Estimate, stream: bool
    ) -> None:
        admission = ctx.admission = await self.governor.admit(who, model, estimate, stream)
        if admission.headers:
            _add_headers(ctx, admission.headers)
        await self.next(ctx)

    def settle(self, ctx: RequestContext) -> None:
        """Settle the admission of the call in ``ctx`` (the edge calls this once)."""
        admission = ctx.admission
        if admission is not None:
            ctx.admission = None
            self.governor.settle(admission, spent(ctx))


def _add_headers(ctx: RequestContext, headers: list[tuple[bytes, bytes]]) -> None:
    if ctx.answer_headers:
        # A new list: CORS's may be shared by every request from one origin.
        ctx.answer_headers = [*ctx.answer_headers, *headers]
    else:
        ctx.answer_headers = headers  # the admission's own list, made for this call
