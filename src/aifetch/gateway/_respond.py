"""Plain ASGI responses: a whole body with Server-Timing, an OpenAI-shaped error, and a
request body read under a size limit."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._errors import GatewayError

__all__ = ["JSON_HEADER", "read_body", "send_error", "send_whole", "timing"]

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JSON_HEADER = (b"content-type", b"application/json")


def timing(started: float, upstream: float) -> tuple[bytes, bytes]:
    """``Server-Timing`` (W3C Server Timing): gateway time vs time waiting on upstreams."""
    total = time.perf_counter() - started
    gateway = max(0.0, total - upstream)
    return (
        b"server-timing",
        b"gateway;dur=%.3f, upstream;dur=%.3f" % (gateway * 1000, upstream * 1000),
    )


async def send_whole(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    started: float,
    upstream: float = 0.0,
) -> int:
    headers.append((b"content-length", b"%d" % len(body)))
    headers.append(timing(started, upstream))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status


async def send_error(
    send: Send, exc: GatewayError, extra: list[tuple[bytes, bytes]], started: float
) -> None:
    headers = [JSON_HEADER, *extra]
    headers.extend(
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers if k != "content-type"
    )
    status = exc.status if exc.status != 499 else 400
    with contextlib.suppress(RuntimeError, OSError):
        await send_whole(send, status, exc.body(), headers, started)


async def read_body(receive: Receive, headers: list[tuple[bytes, bytes]], limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413) before reading it all."""
    for name, value in headers:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise _too_large(limit)
    message = await receive()
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
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _caller_gone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def _caller_gone() -> GatewayError:
    return GatewayError(499, "the caller closed the connection", code="client_closed")


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"The request body is larger than {limit} bytes.", code="request_too_large"
    )
