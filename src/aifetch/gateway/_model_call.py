"""The stage at the end of a model route: read and check the body, make the ``Call``, run
it through the pipes to the upstreams, and answer (streams are handed to ``StreamCall``).
"""

from __future__ import annotations

from collections.abc import Awaitable

from . import _codes as codes
from ._call import STREAMING_ROUTES, Call, Reply
from ._codes import model_not_found
from ._config import GatewayConfig
from ._context import RequestContext
from ._errors import GatewayError
from ._flight import Flight, Flights
from ._metrics import Metrics
from ._parse import decode_fields, one_value_per_key, usage_of
from ._pipes import PipeChain
from ._respond import encoded, read_body, send_whole
from ._stream_call import StreamCall, count_tokens

__all__ = ["ModelCall"]


class ModelCall:
    def __init__(
        self, config: GatewayConfig, chain: PipeChain, metrics: Metrics, flights: Flights
    ) -> None:
        self.models = config.models
        self.max_body = config.limits.max_body_bytes
        self.chain = chain
        self.metrics = metrics
        self.flights = flights
        self.streams = StreamCall(chain, metrics, config.server.heartbeat)

    async def __call__(self, ctx: RequestContext) -> None:
        if self.flights.closing:
            raise codes.SHUTTING_DOWN("the gateway is shutting down")
        body = await read_body(ctx, self.max_body)
        fields = decode_fields(body)
        body = one_value_per_key(body)
        model = self.models.get(fields.model)
        if model is None:
            raise model_not_found(fields.model)
        if ctx.caller is not None and not ctx.caller.may_use(fields.model):
            raise codes.MODEL_NOT_ALLOWED(
                f"This key may not use the model '{fields.model}'.", param="model"
            )
        call = Call(ctx.path, body, ctx.caller_name, ctx.headers, fields)
        ctx.model = fields.model
        flight = ctx.flight = Flight(model.on_disconnect == "drain", ctx.started)
        self.flights.add(flight)
        try:
            if call.stream and ctx.path in STREAMING_ROUTES:
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
                self.metrics.request(call.model, exc.status)
                raise
            finally:
                flight.end_watch()
        finally:
            self.flights.discard(flight)
        if reply.source is not None:
            # A pipe turned a plain call into a stream: close it rather than leak it.
            await reply.source.response.aclose()
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
