"""Upstreams and the fallback + retry loop that runs up to the commit point.

One ``aifetch.AsyncClient`` per configured upstream (its own pool, timeouts and key). The
loop tries each target of a model in order, each up to ``retry.attempts`` times. For a
stream it reads until the first content event before answering (DESIGN.md §3, commit
rule): until then a connect error, 408/409/429/5xx, an error event or a timeout is retried
and then handed to the next target. Upstream URLs come only from config: the caller
supplies a body, never a host, path or header that reaches the upstream.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

import aifetch
from aifetch.sse import SSEBlockSplitter, parse_block

from ._call import Call, Flight, Reply, StreamSource
from ._config import ModelConfig, RetryConfig, UpstreamConfig, client_cert
from ._errors import GatewayError, model_not_found
from ._mock import mock_pipe
from ._parse import patch_body

__all__ = ["Dispatcher", "Upstream", "is_error_data"]

_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
# Upstream rejected the gateway's own credentials: the caller did nothing wrong, and the
# upstream's message may quote part of the key, so it is replaced (DESIGN.md §3, secrets).
_CREDENTIAL_STATUSES = frozenset({401, 403})
_PASSED_HEADERS = ("content-type", "retry-after", "retry-after-ms", "x-request-id")
_MAX_ERROR_BODY = 256 * 1024
# A non-stream upstream body is read whole; beyond this it is refused (502).
_MAX_BODY = 64 * 1024 * 1024
# What a stream may send before its first content event (held, not yet relayed).
_MAX_HELD = 1024 * 1024


class Upstream:
    """One configured upstream: its client, its base URL and the secrets to scrub."""

    def __init__(self, name: str, config: UpstreamConfig) -> None:
        self.name = name
        pipes: list[Any] = []
        if config.kind == "mock":
            pipes.append(mock_pipe(config.mock))
            self.base = "http://mock.invalid"
        else:
            self.base = (config.base_url or "").rstrip("/")
        # Every call sends the same headers: built once here, copied as is per request
        # (a default-headers or bearer pipe would merge them again on every call).
        headers = aifetch.Headers({"content-type": "application/json"})
        for name, value in config.headers.items():
            if name.lower() != "content-type":
                headers.append(name, value)
        if config.api_key and config.kind != "mock" and "authorization" not in headers:
            headers.append("authorization", f"Bearer {config.api_key}")
        self.headers = headers
        # One URL string per route, made once: the same str each call keeps its hash, so
        # the client's URL caches look it up without hashing it again.
        self.urls: dict[str, str] = {}
        t = config.timeout
        self.client = aifetch.AsyncClient(
            pipes=pipes,
            timeout=aifetch.Timeout(
                connect=t.connect, first_byte=t.first_byte, idle=t.idle, total=t.total
            ),
            throw_http_errors=False,
            # A redirect would let the upstream send the gateway (and its key) to another
            # host; upstream hosts come only from config.
            redirect="error",
            max_connections=config.max_connections,
            proxy=config.proxy,
            trust_env=config.trust_env,
            verify=config.verify,
            cert=client_cert(config),
        )
        secrets = [config.api_key or "", *config.headers.values()]
        self.secrets = tuple(s.encode() for s in secrets if len(s) >= 6)

    def url(self, path: str) -> str:
        """The URL of ``path`` (under ``base_url``), kept for the next call."""
        url = self.urls[path] = self.base + path
        return url

    def scrub(self, data: bytes) -> bytes:
        """``data`` with any of this upstream's secrets replaced."""
        for secret in self.secrets:
            if secret in data:
                data = data.replace(secret, b"[redacted]")
        return data

    async def aclose(self) -> None:
        await self.client.aclose()


@dataclass(slots=True)
class _Failure:
    """Why one attempt failed, and what the caller gets if it is the last one."""

    status: int
    message: str
    code: str
    retryable: bool = True
    retry_after: float | None = None
    body: bytes | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    def error(self) -> GatewayError:
        return GatewayError(self.status, self.message, code=self.code, headers=self.headers)


class _ErrorPayload(msgspec.Struct):
    error: Any = None


def is_error_data(data: str) -> bool:
    """True for an event ``data`` holding an OpenAI error object ``{"error": {...}}``."""
    if not data.startswith("{") or '"error"' not in data:
        return False
    try:
        payload = msgspec.json.decode(data, type=_ErrorPayload)
    except msgspec.DecodeError:
        return False
    return bool(payload.error)


def error_message_of(data: str) -> str:
    """The ``message`` inside an error payload, or a generic text."""
    try:
        payload = msgspec.json.decode(data, type=_ErrorPayload)
    except msgspec.DecodeError:
        return "error event"
    err = payload.error
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])
    return err if isinstance(err, str) else "error event"


def _retry_after(headers: aifetch.Headers) -> float | None:
    """Seconds the upstream asked to wait (``retry-after-ms``, ``Retry-After``; RFC 9110
    §10.2.3 allows delta-seconds or an HTTP-date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _passed_headers(headers: aifetch.Headers) -> list[tuple[str, str]]:
    out = []
    for name in _PASSED_HEADERS:
        value = headers.get(name)
        if value is not None:
            out.append((name, value))
    return out


class Dispatcher:
    """Runs one call against a model's targets, up to the commit point."""

    def __init__(self, upstreams: dict[str, Upstream], models: dict[str, ModelConfig]) -> None:
        self.upstreams = upstreams
        self.models = models
        # Called as (public model, upstream name) after each retry, and (public model,)
        # after each fallback; the app wires them to metrics.
        self.on_retry: Any = None
        self.on_fallback: Any = None

    async def dispatch(self, call: Call) -> Reply:
        """The end of the pipe chain: ``call`` against its model's targets. The app puts
        the flight and the upstream path in the call before the chain runs."""
        flight, path = call._flight, call._upstream_path
        assert flight is not None
        model = self.models.get(call.model)
        if model is None:  # a pipe mapped the call onto a name that is not configured
            raise model_not_found(call.model)
        raw = call.raw_body()
        started = time.perf_counter()
        failure: _Failure | None = None
        retries = fallbacks = 0
        for index, target in enumerate(model.targets):
            if index:
                fallbacks += 1
                if self.on_fallback is not None:
                    self.on_fallback(call.model)
            upstream = self.upstreams[target.upstream]
            upstream_model = target.model or call.model
            body = patch_body(raw, call.fields, upstream_model, call.stream)
            for attempt in range(model.retry.attempts):
                if attempt:
                    retries += 1
                    if self.on_retry is not None:
                        self.on_retry(call.model, upstream.name)
                outcome = await self._attempt(upstream, path, body, call.stream, flight)
                if isinstance(outcome, Reply):
                    outcome.upstream = upstream.name
                    outcome.upstream_model = upstream_model
                    outcome.retries, outcome.fallbacks = retries, fallbacks
                    outcome.upstream_time = time.perf_counter() - started
                    return outcome
                failure = outcome
                if not failure.retryable or attempt + 1 == model.retry.attempts:
                    break
                delay = _delay(model.retry, attempt, failure.retry_after)
                if delay is None:
                    break
                if not await flight.pause(delay):
                    raise _stopped(flight)
        assert failure is not None
        if failure.body is not None:
            return Reply(
                status=failure.status,
                headers=failure.headers,
                content=failure.body,
                retries=retries,
                fallbacks=fallbacks,
                upstream_time=time.perf_counter() - started,
            )
        raise failure.error()

    async def _attempt(
        self, upstream: Upstream, path: str, body: bytes, stream: bool, flight: Flight
    ) -> Reply | _Failure:
        if flight.reason is not None:
            raise _stopped(flight)
        try:
            resp = await upstream.client.fetch(
                upstream.urls.get(path) or upstream.url(path),
                method="POST",
                body=body,
                headers=upstream.headers,
                signal=flight.signal,
            )
        except aifetch.AbortError:
            raise _stopped(flight) from None
        except aifetch.TimeoutError as exc:
            return _Failure(
                504, f"upstream '{upstream.name}' timed out ({exc.phase})", "upstream_timeout"
            )
        except aifetch.RedirectError:
            return _Failure(
                502,
                f"upstream '{upstream.name}' answered with a redirect",
                "upstream_redirect",
                False,
            )
        except (aifetch.NetworkError, OSError):
            return _Failure(
                502, f"upstream '{upstream.name}' could not be reached", "upstream_unreachable"
            )
        if resp.status >= 300:
            return await _failed_status(upstream, resp)
        ctype = resp.headers.get("content-type") or ""
        try:
            if stream and ctype.startswith("text/event-stream"):
                return await _open_stream(upstream, resp, ctype)
            content = await resp.bytes(limit=_MAX_BODY)
        except aifetch.AbortError:
            await resp.aclose()
            raise _stopped(flight) from None
        except aifetch.TimeoutError as exc:
            await resp.aclose()
            return _Failure(
                504, f"upstream '{upstream.name}' timed out ({exc.phase})", "upstream_timeout"
            )
        except aifetch.BodyTooLargeError:
            await resp.aclose()
            return _Failure(
                502,
                f"upstream '{upstream.name}' sent a body over {_MAX_BODY} bytes",
                "upstream_too_large",
                False,
            )
        except (aifetch.NetworkError, aifetch.SSEError, OSError):
            await resp.aclose()
            return _Failure(
                502, f"upstream '{upstream.name}' broke the connection", "upstream_reset"
            )
        # Positional: keyword arguments to a class call cost a dict each time (3.11).
        return Reply(resp.status, [("content-type", ctype or "application/json")], content)


def _stopped(flight: Flight) -> GatewayError:
    if flight.reason == "shutdown":
        return GatewayError(503, "the gateway is shutting down", code="shutting_down")
    return GatewayError(499, "the caller closed the connection", code="client_closed")


def _delay(retry: RetryConfig, attempt: int, server_wait: float | None) -> float | None:
    """Seconds before the next attempt, or None to move on to the next target."""
    if server_wait is not None:
        # A server-given wait is used as is (no jitter), if it is short enough.
        return server_wait if server_wait <= retry.max_server_wait else None
    base: float = min(retry.cap, retry.backoff * (2**attempt))
    return base * random.uniform(0.5, 1.0)


async def _failed_status(upstream: Upstream, resp: aifetch.AsyncResponse) -> _Failure:
    status = resp.status
    try:
        content = upstream.scrub((await resp.bytes())[:_MAX_ERROR_BODY])
    except (aifetch.AifetchError, OSError):
        content = b""
    finally:
        await resp.aclose()
    if status < 400:
        return _Failure(
            502, f"upstream '{upstream.name}' answered {status}", "upstream_bad_status", False
        )
    if status in _CREDENTIAL_STATUSES:
        message = f"upstream '{upstream.name}' rejected the gateway's credentials ({status})"
        return _Failure(502, message, "upstream_auth_failed", retryable=False)
    headers = _passed_headers(resp.headers)
    if not content:
        content = GatewayError(status, f"upstream '{upstream.name}' answered {status}").body()
        headers = [
            ("content-type", "application/json"),
            *[h for h in headers if h[0] != "content-type"],
        ]
    return _Failure(
        status,
        f"upstream '{upstream.name}' answered {status}",
        "upstream_status",
        retryable=status in _RETRY_STATUSES,
        retry_after=_retry_after(resp.headers),
        body=content,
        headers=headers,
    )


async def _open_stream(
    upstream: Upstream, resp: aifetch.AsyncResponse, ctype: str
) -> Reply | _Failure:
    """Read the stream up to its first content event (the commit point)."""
    chunks = aiter(resp.body)
    splitter = SSEBlockSplitter()
    held: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > _MAX_HELD:
            # Comments or role chunks without end: holding them all would be unbounded.
            await resp.aclose()
            message = f"upstream '{upstream.name}' sent {_MAX_HELD} bytes without content"
            return _Failure(502, message, "upstream_no_content")
        blocks = splitter.feed(chunk)
        verdict = _scan(blocks, held)
        if verdict is not None:
            return await _settle(upstream, resp, verdict, chunks, splitter, held, ctype)
    tail = splitter.close()
    verdict = _scan([tail] if tail else [], held)
    if verdict is not None:
        return await _settle(upstream, resp, verdict, chunks, splitter, held, ctype)
    await resp.aclose()
    return _Failure(
        502, f"upstream '{upstream.name}' ended the stream before any content", "upstream_empty"
    )


async def _settle(
    upstream: Upstream,
    resp: aifetch.AsyncResponse,
    verdict: str | None,
    chunks: Any,
    splitter: SSEBlockSplitter,
    held: list[bytes],
    ctype: str,
) -> Reply | _Failure:
    if verdict == "":
        source = StreamSource(
            response=resp, chunks=chunks, splitter=splitter, held=held, secrets=upstream.secrets
        )
        return Reply(status=resp.status, headers=[("content-type", ctype)], source=source)
    # The stream is abandoned before anything reached the caller.
    await resp.aclose()
    message = upstream.scrub(str(verdict).encode()).decode()
    return _Failure(
        502, f"upstream '{upstream.name}' sent an error: {message}", "upstream_error_event"
    )


def _scan(blocks: Iterable[bytes], held: list[bytes]) -> str | None:
    """Hold ``blocks``; ``""`` once a content event is among them, an error message if an
    error event comes first, ``None`` to keep reading."""
    committed = False
    for block in blocks:
        if committed:
            held.append(block)
            continue
        event = parse_block(block, stream_start=not held)
        if event is not None and (event.event == "error" or is_error_data(event.data)):
            return error_message_of(event.data) or "error event"
        held.append(block)
        if event is not None and is_content_data(event.data):
            committed = True
    return "" if committed else None


class _Delta(msgspec.Struct):
    content: Any = None
    tool_calls: Any = None
    function_call: Any = None
    refusal: Any = None
    reasoning_content: Any = None
    reasoning: Any = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    text: Any = None
    finish_reason: Any = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: Any = None


_chunk_decoder = msgspec.json.Decoder(_Chunk)


def is_content_data(data: str) -> bool:
    """Does this event carry part of the answer? The commit point waits for one.

    A chunk holding only ``{"role": "assistant", "content": ""}`` does not: an error event
    may still follow it, and the call can still go to a fallback target. Data that is not
    an OpenAI chunk (and ``[DONE]``) counts as content: the gateway does not hold what it
    cannot read.
    """
    if not data:
        return False
    try:
        chunk = _chunk_decoder.decode(data)
    except msgspec.DecodeError:
        return True
    if chunk.usage is not None:
        return True
    for choice in chunk.choices or ():
        if choice.text or choice.finish_reason is not None:
            return True
        d = choice.delta
        if d is not None and (
            d.content
            or d.tool_calls
            or d.function_call
            or d.refusal
            or d.reasoning_content
            or d.reasoning
        ):
            return True
    return False
