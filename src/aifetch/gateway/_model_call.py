"""The stage at the end of a model route: make the ``Call`` and its ``Flight``, run it
through the pipes to the upstreams, and answer (streams are handed to ``StreamCall``).

The model is not looked up here: pipes see the name the caller sent, and may map a name
that is not configured (an alias) onto one that is. The dispatcher, at the end of the
pipes, refuses a name still unknown (404) or not the caller's to use (403).
"""

from __future__ import annotations

from collections.abc import Awaitable

from . import _codes as codes
from ._call import STREAMING_ROUTES, Call, Reply
from ._config import GatewayConfig
from ._context import RequestContext
from ._errors import GatewayError
from ._flight import Flight, Flights
from ._metrics import Metrics
from ._parse import usage_of
from ._pipes import PipeChain
from ._respond import encoded, send_whole
from ._stream_call import StreamCall, count_tokens

__all__ = ["ModelCall"]


class ModelCall:
    def __init__(
        self, config: GatewayConfig, chain: PipeChain, metrics: Metrics, flights: Flights
    ) -> None:
        self.models = config.models
        self.chain = chain
        self.metrics = metrics
        self.flights = flights
        self.streams = StreamCall(chain, metrics)

    async def __call__(self, ctx: RequestContext) -> None:
        call = Call.of_request(ctx)
        # Draining is the model's choice, known once the dispatcher has found it.
        flight = ctx.flight = Flight(False, ctx.started)
        self.flights.add(flight)
        try:
            if call.stream and ctx.route in STREAMING_ROUTES:
                ctx.stream = True
                await self.streams(ctx, call)
                return
            # A plain call runs here rather than in a method of its own: a coroutine frame
            # costs more than the code in it (~1.6k instructions per request,
            # bench/README.md).
            flight.watch_later(ctx.receive)
            try:
                reply = await self.chain.run(call, ctx)
            except GatewayError as exc:
                if exc.code != codes.MODEL_NOT_FOUND.code:  # never an unknown name as a label
                    self.metrics.request(call.model, exc.status)
                raise
            finally:
                flight.end_watch()
        finally:
            self.flights.discard(flight)
            if flight.opened is not None:
                await flight.close_opened()
        if reply.source is not None:
            # A pipe turned a plain call into a stream: close it rather than leak it.
            await reply.source.close()
            raise codes.PIPE_ERROR("a gateway pipe returned a stream for a non-stream call")
        await self._answer(ctx, call, reply)

    def _answer(self, ctx: RequestContext, call: Call, reply: Reply) -> Awaitable[None]:
        """Send a non-stream reply, with its accounting."""
        content = reply.content or b""
        ctx.took(reply)
        if 200 <= reply.status < 300:
            usage = usage_of(content)
            if usage is not None:
                count_tokens(self.metrics, ctx, call, usage)
        self.metrics.answered(call.model, reply.status, ctx.added())
        return send_whole(ctx, reply.status, content, encoded(reply.headers))
