"""A streamed model call: hold the caller's headers until the upstream commits, then relay.

The caller's response starts only once the dispatcher returns a stream past its commit
point (docs/ARCHITECTURE.md, the commit rule), unless the heartbeat had to start it
early. Meanwhile the call's flight watches for the caller leaving.
"""

from __future__ import annotations

import time

from . import _codes as codes
from ._call import Call, Reply
from ._context import RequestContext
from ._downstream import SSE_HEADERS, Downstream
from ._errors import GatewayError, error_event
from ._metrics import Metrics
from ._pipes import PipeChain
from ._relay import relay
from ._respond import encoded, send_whole, server_timing
from ._usage import Usage

__all__ = ["StreamCall", "count_tokens"]

_SSE_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")


class StreamCall:
    """The stream's heartbeat is started by the sweep over the calls in flight
    (``_flight``) once it is needed. So is its caller's disconnect watch while the stream
    waits for its commit; a committed stream starts the watch at once, since one that ended
    before the sweep came would otherwise be read to its end for a caller already gone."""

    def __init__(self, chain: PipeChain, metrics: Metrics) -> None:
        self.chain = chain
        self.metrics = metrics

    async def __call__(self, ctx: RequestContext, call: Call) -> None:
        flight = ctx.flight
        assert flight is not None
        down = flight.down = Downstream(ctx.send, [_SSE_TYPE, *SSE_HEADERS, *ctx.answer_headers])
        flight.watch_later(ctx.receive)
        try:
            try:
                reply = await self.chain.run(call, ctx)
            except GatewayError as exc:
                if exc.code != codes.MODEL_NOT_FOUND.code:  # never an unknown name as a label
                    self.metrics.request(call.model, exc.status)
                if not down.started:
                    raise
                ctx.status, ctx.error = 200, exc.code or exc.type
                if flight.reason != "disconnect":
                    await down.end(error_event(exc))
                return
            if reply.source is None:
                await self._late_plain(ctx, call, reply, down)
                return
            await self._start(ctx, call, reply, down)
            flight.watch_now()
            outcome = await relay(ctx, call, reply, down)
        finally:
            down.ended = True  # no heartbeat after this, whatever happened
            flight.end_watch()
        if outcome.usage is not None:
            count_tokens(self.metrics, ctx, call, outcome.usage)
        error = outcome.error
        status = error.status if error is not None else reply.status
        self.metrics.request(call.model, 499 if outcome.caller_gone else status)
        if outcome.caller_gone:
            ctx.error = codes.CLIENT_CLOSED.code
        elif error is not None:
            ctx.error = error.code

    async def _start(self, ctx: RequestContext, call: Call, reply: Reply, down: Downstream) -> None:
        """The stream committed: account for its first token and start the answer."""
        ctx.took(reply)
        ctx.ttft = time.perf_counter() - ctx.started
        ctx.status = reply.status
        self.metrics.first_token(call.model, ctx.ttft)
        self.metrics.added(call.model, ctx.added())
        headers = encoded(reply.headers)
        if not any(name == b"content-type" for name, _ in headers):
            headers.append(_SSE_TYPE)
        headers.extend(SSE_HEADERS)
        headers.extend(ctx.answer_headers)
        headers.append(server_timing(ctx))
        await down.start(reply.status, headers)
        down.on_gap = self.metrics.gap_observer(call.model)

    async def _late_plain(
        self, ctx: RequestContext, call: Call, reply: Reply, down: Downstream
    ) -> None:
        """A stream call that ended without a stream: an upstream error passed on, or an
        upstream that answered a stream request with plain JSON."""
        self.metrics.request(call.model, reply.status)
        ctx.took(reply)
        if down.started:
            # Headers already went out (a heartbeat); the status can only travel inside.
            status = reply.status if reply.status >= 400 else 502
            err = codes.UPSTREAM_STATUS(f"upstream answered {reply.status}", status=status)
            ctx.status = 200
            await down.end(error_event(err))
            return
        await send_whole(ctx, reply.status, reply.content or b"", encoded(reply.headers))


def count_tokens(metrics: Metrics, ctx: RequestContext, call: Call, usage: Usage) -> None:
    """Record the tokens a call used."""
    metrics.tokens.add(call.caller or "", call.model, usage)
    ctx.usage = usage
