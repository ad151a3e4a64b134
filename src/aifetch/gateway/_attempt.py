"""One attempt at one upstream: send the call, classify what came back.

A success is a ``Reply`` (a whole body, or a stream past its commit point); anything else
is a ``Failure`` saying whether another attempt may help. Foreign exceptions from the
client are mapped here, once. What differs between upstream kinds is on the ``Upstream``
the attempt is given (its headers, retry statuses, and for a translated call a client that
translates: ``_kinds``); what differs between wire formats is in the stream's rules
(``_rules``).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

import aifetch
from aifetch._provider_error import parse_error_body
from aifetch._retry_timing import server_wait

from . import _codes as codes
from ._call import UPSTREAM_PATHS, Call, Reply
from ._commit import open_stream
from ._context import RequestContext
from ._errors import GatewayError
from ._failure import Failure
from ._flight import Flight
from ._rules import STREAM_RULES
from ._upstream import Upstream, answer_headers

__all__ = ["attempt", "stopped"]

# The upstream rejected the gateway's own credentials: the caller did nothing wrong, and
# the upstream's message may quote part of the key, so it is replaced.
_CREDENTIAL_STATUSES = frozenset({401, 403})
_PASSED_HEADERS = ("content-type", "retry-after", "retry-after-ms", "x-request-id")
_MAX_ERROR_BODY = 256 * 1024
# A non-stream upstream body is read whole; beyond this it is refused (502).
_MAX_BODY = 64 * 1024 * 1024


async def attempt(
    upstream: Upstream, call: Call, body: bytes, ctx: RequestContext
) -> Reply | Failure:
    """Send ``body`` (``call``'s, as this target must receive it) to ``upstream``; a stream
    is read to its commit point. The call holds one of the upstream's slots meanwhile, and
    a committed stream keeps it until it is closed. (One function, not two: a coroutine
    frame per call costs more than the code in it; docs/ARCHITECTURE.md.)"""
    flight = ctx.flight
    assert flight is not None
    if flight.reason is not None:
        raise stopped(flight)
    caller = ctx.caller_name or ""
    slot = upstream.slots.try_take(caller)
    if slot is None:
        slot = await upstream.slots.take(caller, upstream.pool_wait, flight.signal)
        if slot is None:
            return _busy(upstream)
    try:
        try:
            client = upstream.stream_client if call.stream else upstream.client
            resp = await client.fetch(
                upstream.url(UPSTREAM_PATHS[call.route]),
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
        headers = answer_headers(resp)
        ctype = headers[0][1]
        try:
            if call.stream and ctype.startswith("text/event-stream"):
                opened = await open_stream(upstream, resp, headers, STREAM_RULES[call.route])
                if isinstance(opened, Reply) and opened.source is not None:
                    opened.source.slot, slot = slot, None  # the stream gives it back
                return opened
            content = upstream.secrets.scrub(await resp.bytes(limit=_MAX_BODY))
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
            message = f"upstream '{upstream.name}' broke the connection"
            return Failure(codes.UPSTREAM_RESET, message)
        if not ctype:
            headers[0] = ("content-type", "application/json")
        return Reply(resp.status, headers, content)
    finally:
        if slot is not None:
            slot.release()


def _busy(upstream: Upstream) -> Failure:
    # Not retried on the same upstream (it is as busy a moment later): the next target is.
    message = f"upstream '{upstream.name}' has no connection free (timeout.pool)"
    return Failure(codes.UPSTREAM_BUSY, message, retryable=False, headers=[("retry-after", "1")])


async def _error_body(upstream: Upstream, resp: aifetch.AsyncResponse) -> bytes:
    """Up to ``_MAX_ERROR_BODY`` bytes of an error body, secrets scrubbed. Scrubbed before
    it is cut: read a secret's length past the cut, a secret straddling it is replaced
    whole, and whatever of it lies past the cut is dropped with the rest."""
    wanted = _MAX_ERROR_BODY + upstream.secrets.longest
    parts: list[bytes] = []
    size = 0
    async for chunk in resp.body:
        parts.append(chunk)
        size += len(chunk)
        if size >= wanted:
            break
    return upstream.secrets.scrub(b"".join(parts)[:wanted])[:_MAX_ERROR_BODY]


class _ErrorShape(msgspec.Struct):
    error: dict[str, Any]


def _is_openai_error(content: bytes) -> bool:
    """``{"error": {"message": "...", ...}}``: what every OpenAI SDK reads its message from."""
    try:
        return isinstance(msgspec.json.decode(content, type=_ErrorShape).error.get("message"), str)
    except (msgspec.DecodeError, RecursionError):
        return False


def _as_openai_error(content: bytes, status: int, name: str) -> bytes:
    """An upstream error in another shape (plain text, HTML, another JSON layout) in
    OpenAI's, keeping what it said, so an SDK shows the upstream's message."""
    found = parse_error_body(content, None)[1] if content else None
    message = found.message if found is not None and found.message else None
    return GatewayError(
        status,
        message or f"upstream '{name}' answered {status}",
        type=found.type if found is not None else None,
        param=found.param if found is not None else None,
        code=found.code if found is not None else None,
    ).body()


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
        content = await _error_body(upstream, resp)
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
    if not _is_openai_error(content):
        content = _as_openai_error(content, status, name)
        headers = [("content-type", "application/json")] + [
            h for h in headers if h[0] != "content-type"
        ]
    return Failure(
        codes.UPSTREAM_STATUS,
        f"upstream '{name}' answered {status}",
        status=status,
        retryable=status in upstream.retry_statuses,
        retry_after=server_wait(resp.headers.get, now=time.time()),
        body=content,
        headers=headers,
    )
