"""Plain ASGI answers: a whole body with Server-Timing, and an OpenAI-shaped error."""

from __future__ import annotations

import contextlib
import time

from ._context import RequestContext
from ._errors import GatewayError

__all__ = ["JSON_HEADER", "encoded", "send_error", "send_whole", "server_timing"]

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
