"""One attempt at one upstream: send the call, classify what came back.

A success is a ``Reply`` (a whole body, or a stream past its commit point); anything else
is a ``Failure`` saying whether another attempt may help. Foreign exceptions from the
client are mapped here, once.
"""

from __future__ import annotations

import time

import aifetch
from aifetch._retry_timing import DEFAULT_RETRY_STATUSES, server_wait

from . import _codes as codes
from ._call import MODEL_ROUTES, Call, Reply
from ._commit import open_stream
from ._errors import GatewayError
from ._failure import Failure
from ._flight import Flight
from ._upstream import Upstream

__all__ = ["attempt", "stopped"]

# The upstream rejected the gateway's own credentials: the caller did nothing wrong, and
# the upstream's message may quote part of the key, so it is replaced.
_CREDENTIAL_STATUSES = frozenset({401, 403})
_PASSED_HEADERS = ("content-type", "retry-after", "retry-after-ms", "x-request-id")
_MAX_ERROR_BODY = 256 * 1024
# A non-stream upstream body is read whole; beyond this it is refused (502).
_MAX_BODY = 64 * 1024 * 1024


async def attempt(upstream: Upstream, call: Call, body: bytes, flight: Flight) -> Reply | Failure:
    """Send ``body`` (``call``'s, as this target must receive it) to ``upstream``; a stream
    is read to its commit point."""
    if flight.reason is not None:
        raise stopped(flight)
    try:
        resp = await upstream.client.fetch(
            upstream.url(MODEL_ROUTES[call.route]),
            method="POST",
            body=body,
            headers=upstream.headers,
            signal=flight.signal,
        )
    except aifetch.AbortError:
        raise stopped(flight) from None
    except aifetch.TimeoutError as exc:
        return _timed_out(upstream, exc)
    except aifetch.RedirectError:
        message = f"upstream '{upstream.name}' answered with a redirect"
        return Failure(codes.UPSTREAM_REDIRECT, message, retryable=False)
    except (aifetch.NetworkError, OSError):
        message = f"upstream '{upstream.name}' could not be reached"
        return Failure(codes.UPSTREAM_UNREACHABLE, message)
    if resp.status >= 300:
        return await _failed_status(upstream, resp)
    ctype = resp.headers.get("content-type") or ""
    try:
        if call.stream and ctype.startswith("text/event-stream"):
            return await open_stream(upstream, resp, ctype)
        content = await resp.bytes(limit=_MAX_BODY)
    except aifetch.AbortError:
        await resp.aclose()
        raise stopped(flight) from None
    except aifetch.TimeoutError as exc:
        await resp.aclose()
        return _timed_out(upstream, exc)
    except aifetch.BodyTooLargeError:
        await resp.aclose()
        message = f"upstream '{upstream.name}' sent a body over {_MAX_BODY} bytes"
        return Failure(codes.UPSTREAM_TOO_LARGE, message, retryable=False)
    except (aifetch.NetworkError, aifetch.SSEError, OSError):
        await resp.aclose()
        return Failure(codes.UPSTREAM_RESET, f"upstream '{upstream.name}' broke the connection")
    return Reply(resp.status, [("content-type", ctype or "application/json")], content)


def stopped(flight: Flight) -> GatewayError:
    """The error for a call its flight stopped."""
    if flight.reason == "shutdown":
        return codes.SHUTTING_DOWN("the gateway is shutting down")
    return codes.CLIENT_CLOSED("the caller closed the connection")


def _timed_out(upstream: Upstream, exc: aifetch.TimeoutError) -> Failure:
    message = f"upstream '{upstream.name}' timed out ({exc.phase})"
    return Failure(codes.UPSTREAM_TIMEOUT, message)


async def _failed_status(upstream: Upstream, resp: aifetch.AsyncResponse) -> Failure:
    status = resp.status
    try:
        content = upstream.scrub((await resp.bytes())[:_MAX_ERROR_BODY])
    except (aifetch.AifetchError, OSError):
        content = b""
    finally:
        await resp.aclose()
    name = upstream.name
    if status < 400:
        message = f"upstream '{name}' answered {status}"
        return Failure(codes.UPSTREAM_BAD_STATUS, message, retryable=False)
    if status in _CREDENTIAL_STATUSES:
        message = f"upstream '{name}' rejected the gateway's credentials ({status})"
        return Failure(codes.UPSTREAM_AUTH_FAILED, message, retryable=False)
    headers = [(n, v) for n in _PASSED_HEADERS if (v := resp.headers.get(n)) is not None]
    if not content:
        content = GatewayError(status, f"upstream '{name}' answered {status}").body()
        headers = [("content-type", "application/json")] + [
            h for h in headers if h[0] != "content-type"
        ]
    return Failure(
        codes.UPSTREAM_STATUS,
        f"upstream '{name}' answered {status}",
        status=status,
        retryable=status in DEFAULT_RETRY_STATUSES,
        retry_after=server_wait(resp.headers.get, now=time.time()),
        body=content,
        headers=headers,
    )
