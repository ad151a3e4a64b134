"""One plain call to one upstream, its answer sent to the caller as it came: for the routes
that are relayed without a model's targets, retries or streams (``/v1/messages/count_tokens``,
``/v1/responses/{id}``).

The call takes one of the upstream's connection slots, as any call does; the answer is read
whole (up to 64 MiB) and scrubbed of every configured secret. An upstream that rejects the
gateway's own key is a 502 (the caller did nothing wrong); any other status is passed on.
"""

from __future__ import annotations

import time

import aifetch
from aifetch import AbortSignal

from . import _codes as codes
from ._context import RequestContext
from ._respond import encoded, send_whole
from ._upstream import Upstream, answer_headers

__all__ = ["pass_through"]

_MAX_BODY = 64 * 1024 * 1024
_CREDENTIAL_STATUSES = frozenset({401, 403})


async def pass_through(
    ctx: RequestContext,
    upstream: Upstream,
    method: str,
    url: str,
    body: bytes | None,
    headers: aifetch.Headers,
) -> None:
    """Send ``method url`` to ``upstream`` and answer ``ctx`` with what came back."""
    caller = ctx.caller_name or ""
    slot = upstream.slots.try_take(caller)
    if slot is None:
        slot = await upstream.slots.take(caller, upstream.pool_wait, AbortSignal())
        if slot is None:
            raise codes.UPSTREAM_BUSY(
                f"upstream '{upstream.name}' has no connection free (timeout.pool)",
                headers=[("retry-after", "1")],
            )
    name = upstream.name
    started = time.perf_counter()
    try:
        resp = await upstream.client.fetch(url, method=method, body=body, headers=headers)
        try:
            content = upstream.secrets.scrub(await resp.bytes(limit=_MAX_BODY))
        finally:
            await resp.aclose()
    except aifetch.TimeoutError as exc:
        raise codes.UPSTREAM_TIMEOUT(f"upstream '{name}' timed out ({exc.phase})") from None
    except aifetch.RedirectError:
        raise codes.UPSTREAM_REDIRECT(f"upstream '{name}' answered with a redirect") from None
    except aifetch.BodyTooLargeError:
        message = f"upstream '{name}' sent a body over {_MAX_BODY} bytes"
        raise codes.UPSTREAM_TOO_LARGE(message) from None
    except (aifetch.NetworkError, OSError):
        raise codes.UPSTREAM_UNREACHABLE(f"upstream '{name}' could not be reached") from None
    finally:
        slot.release()
    ctx.upstream, ctx.upstream_time = name, time.perf_counter() - started
    if resp.status in _CREDENTIAL_STATUSES:
        message = f"upstream '{name}' rejected the gateway's credentials ({resp.status})"
        raise codes.UPSTREAM_AUTH_FAILED(message)
    answer = answer_headers(resp)
    if not answer[0][1]:
        answer[0] = ("content-type", "application/json")
    await send_whole(ctx, resp.status, content, encoded(answer))
