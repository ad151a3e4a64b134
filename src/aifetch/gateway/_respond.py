"""Plain ASGI answers: a whole body with Server-Timing, an OpenAI-shaped error, and a
request body read under a size limit."""

from __future__ import annotations

import contextlib
import time

from . import _codes as codes
from ._context import RequestContext
from ._errors import GatewayError

__all__ = ["JSON_HEADER", "encoded", "read_body", "send_error", "send_whole", "server_timing"]

JSON_HEADER = (b"content-type", b"application/json")


def server_timing(ctx: RequestContext) -> tuple[bytes, bytes]:
    """``Server-Timing`` (W3C Server Timing): gateway time vs time waiting on upstreams."""
    total = time.perf_counter() - ctx.started
    upstream = ctx.upstream_time
    gateway = max(0.0, total - upstream)
    return (
        b"server-timing",
        b"gateway;dur=%.3f, upstream;dur=%.3f" % (gateway * 1000, upstream * 1000),
    )


def encoded(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """A reply's headers in ASGI form (a loop: a comprehension is a frame of its own
    before Python 3.12)."""
    out = []
    for name, value in headers:
        out.append((name.encode("latin-1"), value.encode("latin-1")))
    return out


async def send_whole(
    ctx: RequestContext, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """Answer ``ctx`` with ``body``; ``headers`` is extended (the caller's list is spent)."""
    headers.extend(ctx.answer_headers)
    headers.append((b"content-length", b"%d" % len(body)))
    headers.append(server_timing(ctx))
    ctx.status = status
    await ctx.send({"type": "http.response.start", "status": status, "headers": headers})
    await ctx.send({"type": "http.response.body", "body": body})


async def send_error(ctx: RequestContext, exc: GatewayError) -> None:
    ctx.error = exc.code or exc.type
    headers = [JSON_HEADER]
    for name, value in exc.headers:
        if name != "content-type":
            headers.append((name.encode("latin-1"), value.encode("latin-1")))
    # 499 is for the log: a caller still there to read an answer gets a plain 400.
    status = exc.status if exc.status != 499 else 400
    with contextlib.suppress(RuntimeError, OSError):
        await send_whole(ctx, status, exc.body(), headers)
    ctx.status = exc.status


async def read_body(ctx: RequestContext, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413) before reading it all."""
    for name, value in ctx.headers:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise _too_large(limit)
    message = await ctx.receive()
    if message["type"] == "http.disconnect":
        # The caller left before sending any body: not an empty (invalid) body.
        raise _caller_gone()
    body: bytes = message.get("body", b"")
    # Checked before looking for more: a first read already over the limit must be
    # refused now, not after a next read that a caller waiting for its answer never sends.
    if len(body) > limit:
        raise _too_large(limit)
    if not message.get("more_body", False):
        return body
    parts, size = [body], len(body)
    while message.get("more_body", False):
        message = await ctx.receive()
        if message["type"] == "http.disconnect":
            raise _caller_gone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def _caller_gone() -> GatewayError:
    return codes.CLIENT_CLOSED("the caller closed the connection")


def _too_large(limit: int) -> GatewayError:
    return codes.REQUEST_TOO_LARGE(f"The request body is larger than {limit} bytes.")
