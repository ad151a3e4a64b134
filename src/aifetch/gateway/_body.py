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

    def __init__(self, limits: LimitsConfig, flights: Flights) -> None:
        self.limit = limits.max_body_bytes
        self.budget = BodyBudget(limits.max_buffered_body_bytes)
        self.flights = flights

    async def __call__(self, ctx: RequestContext) -> None:
        if self.flights.closing:
            raise codes.SHUTTING_DOWN("the gateway is shutting down")
        held = 0
        try:
            ctx.body, held = await self._read(ctx)
            ctx.fields = decode_fields(ctx.body)
            ctx.body = one_value_per_key(ctx.body)
            ctx.model = ctx.fields.model
            await self.next(ctx)
        finally:
            self.budget.held -= held

    async def _read(self, ctx: RequestContext) -> tuple[bytes, int]:
        """The body, and the budget it took (released by the caller, whatever happens)."""
        declared = _content_length(ctx.headers)
        if declared is not None:
            if declared > self.limit:
                raise _too_large(self.limit)
            self.budget.take(declared)  # before a byte is read, for the whole body
            held = declared
        else:
            held = 0
        parts: list[bytes] = []
        size = 0
        try:
            while True:
                message = await ctx.receive()
                if message["type"] == "http.disconnect":
                    # The caller left before sending its body: not an empty (invalid) body.
                    raise codes.CLIENT_CLOSED("the caller closed the connection")
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                # Checked before looking for more: a read already over the limit is refused
                # now, not after a next read that a caller waiting for its answer never sends.
                if size > self.limit:
                    raise _too_large(self.limit)
                if size > held:  # a chunked body takes its budget as it arrives
                    self.budget.take(size - held)
                    held = size
                parts.append(chunk)
                if not message.get("more_body", False):
                    break
        except BaseException:
            self.budget.held -= held
            raise
        return parts[0] if len(parts) == 1 else b"".join(parts), held


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


def _too_large(limit: int) -> GatewayError:
    return codes.REQUEST_TOO_LARGE(f"The request body is larger than {limit} bytes.")
