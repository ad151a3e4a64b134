"""The limits stage: reserve a call's share of its caller's limits before any upstream is
called, and settle it, exactly once, when the call is over.

It runs after the body is read (the estimate needs its size and ``max_tokens``) and
before the model call. A caller without limits passes through a plain ``def`` (no
coroutine frame); a limited one is admitted (``Governor.admit``: at most one Redis
script call), or refused with 429 and the ``x-ratelimit-*`` and ``Retry-After`` headers
(503 ``state_unavailable`` when Redis is away and ``on_state_error`` is ``closed``).
An admitted call's answer carries the ``x-ratelimit-*`` headers, and whatever ends the
call (an answer sent, a stream ended or cut, an upstream failure, the caller gone) settles
it in a ``finally``: ``Governor.settle`` never waits, and sends nothing per chunk.

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
from .governance import Governor, Identity

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
        return self._admitted(ctx, who)

    async def _admitted(self, ctx: RequestContext, who: Identity) -> None:
        governor = self.governor
        fields = ctx.fields
        assert fields is not None  # ReadBody ran
        assert ctx.model is not None
        out = fields.max_completion_tokens
        estimate = governor.estimate(
            len(ctx.body),
            out if out is not None else fields.max_tokens,
            fields.n,
            embeddings=ctx.path == _EMBEDDINGS,
        )
        stream = bool(fields.stream) and ctx.path in STREAMING_ROUTES
        admission = await governor.admit(who, ctx.model, estimate, stream)
        if admission.headers:
            # A new list: CORS's may be shared by every request from one origin.
            ctx.answer_headers = [*ctx.answer_headers, *admission.headers]
        try:
            await self.next(ctx)
        finally:
            governor.settle(admission, spent(ctx))
