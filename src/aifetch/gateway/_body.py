"""The stage that reads a model call's body: under its size limit and under the gateway's
budget for the bodies it holds at once; then its routing fields are read, and each
routing key is kept once.

It runs after the gate: a caller without a valid key never gets a byte read (nor a
``100 Continue``, which uvicorn sends only once the app asks for the body). A body is
held until its call ends (the upstream may be retried with it), so the budget is released
then.
"""

from __future__ import annotations

from . import _codes as codes
from ._config import LimitsConfig
from ._context import Handler, RequestContext
from ._errors import GatewayError
from ._flight import Flights
from ._parse import decode_fields, one_value_per_key

__all__ = ["BodyBudget", "ReadBody"]


class BodyBudget:
    """Bytes of request bodies held at once, across all requests."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> None:
        if self.held + size > self.limit:
            raise codes.SERVER_BUSY(
                "The gateway is holding as many request bodies as it may; retry shortly.",
                headers=[("retry-after", "1")],
            )
        self.held += size


class ReadBody:
    next: Handler

    def __init__(
        self, limits: LimitsConfig, flights: Flights, budget: BodyBudget | None = None
    ) -> None:
        """``budget``: another route's, so that all routes share one."""
        self.limit = limits.max_body_bytes
        self.budget = budget or BodyBudget(limits.max_buffered_body_bytes)
        self.flights = flights

    async def __call__(self, ctx: RequestContext) -> None:
        # One coroutine for the read and the rest of the call (a frame costs more than the
        # code in it; docs/ARCHITECTURE.md): the budget taken is given back in ``finally``.
        if self.flights.closing:
            raise codes.SHUTTING_DOWN("the gateway is shutting down")
        limit, budget = self.limit, self.budget
        held = 0
        try:
            for name, value in ctx.headers:
                if name == b"content-length" and value.isdigit():
                    declared = int(value)
                    if declared > limit:
                        raise _too_large(limit)
                    budget.take(declared)  # before a byte is read, for the whole body
                    held = declared
                    break
            parts: list[bytes] = []
            size = 0
            while True:
                message = await ctx.receive()
                if message["type"] == "http.disconnect":
                    # The caller left before sending its body: not an empty (invalid) body.
                    raise codes.CLIENT_CLOSED("the caller closed the connection")
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                # Checked before looking for more: a read already over the limit is refused
                # now, not after a next read that a caller waiting for its answer never
                # sends.
                if size > limit:
                    raise _too_large(limit)
                if size > held:  # a chunked body takes its budget as it arrives
                    budget.take(size - held)
                    held = size
                parts.append(chunk)
                if not message.get("more_body", False):
                    break
            body = parts[0] if len(parts) == 1 else b"".join(parts)
            fields = ctx.fields = decode_fields(body)
            ctx.body = one_value_per_key(body)
            ctx.model = fields.model
            await self.next(ctx)
        finally:
            budget.held -= held


def _too_large(limit: int) -> GatewayError:
    return codes.REQUEST_TOO_LARGE(f"The request body is larger than {limit} bytes.")
