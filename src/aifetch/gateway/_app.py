"""The gateway as a plain ASGI application: routing, auth, CORS, errors, timing, logs.

No framework sits on the hot path (DESIGN.md §4: raw ASGI served 1.35-1.46x the req/s of
Starlette here). Routes are an exact-match table; anything else is an OpenAI-shaped 404.
Mounted under a prefix (``app.mount("/ai", gateway)``), ``root_path`` is stripped first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from ._accesslog import AccessLog, AccessRecord
from ._auth import Authenticator
from ._call import Call, Flight, Reply
from ._config import GatewayConfig, is_loopback_host
from ._cors import Cors
from ._errors import GatewayError, error_event, model_not_found
from ._metrics import Metrics
from ._parse import decode_fields, usage_of
from ._pipes import fold, load_pipes
from ._relay import SSE_HEADERS, Downstream, heartbeat, relay
from ._respond import JSON_HEADER, read_body, send_error, send_whole, timing
from ._upstreams import Dispatcher, Upstream

__all__ = ["GatewayApp", "create_app"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# Public model routes → the upstream path each one calls (under the upstream's base_url).
_MODEL_ROUTES = {
    "/v1/chat/completions": "/chat/completions",
    "/v1/completions": "/completions",
    "/v1/embeddings": "/embeddings",
}
_STREAMING_ROUTES = frozenset({"/v1/chat/completions", "/v1/completions"})
_GET_ROUTES = frozenset({"/v1/models", "/healthz", "/metrics"})

log = logging.getLogger("aifetch.gateway")
_INTERNAL = GatewayError(
    500, "The gateway failed to handle the request.", type="server_error", code="internal_error"
)

# A non-stream call starts watching for its caller's disconnect once it has run this long
# (checked by a sweep at this interval, so within twice this).
_WATCH_AFTER = 0.25
_SSE_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")
_encode = msgspec.json.Encoder().encode


def create_app(config: GatewayConfig) -> GatewayApp:
    """The gateway's ASGI application for ``config``."""
    return GatewayApp(config)


class GatewayApp:
    """An OpenAI-compatible gateway; an ASGI 3 callable.

    Close it with ``await app.aclose()`` (ASGI lifespan shutdown does this when the server
    sends lifespan events; a host app that mounts it should call it on its own shutdown).
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.upstreams = {name: Upstream(name, cfg) for name, cfg in config.upstreams.items()}
        self.dispatcher = Dispatcher(self.upstreams, dict(config.models))
        self.dispatcher.on_retry = self.metrics.retry
        self.dispatcher.on_fallback = self.metrics.fallback
        self.auth = Authenticator(config.callers)
        self.cors = Cors(config.cors)
        self.access = AccessLog(config.server.access_log)
        self.heartbeat = config.server.heartbeat
        self.max_body = config.limits.max_body_bytes
        self._chain = fold(load_pipes(config.pipes), self.dispatcher.dispatch)
        # Calls in flight: for shutdown, and for the sweep that starts the disconnect watch
        # of long non-stream calls (a timer or deadline entry per call cost more).
        self._flights: set[Flight] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._closing = False
        self._all_models = _models_body(list(config.models))

    # ------------------------------------------------------------------ lifecycle

    def begin_shutdown(self, grace: float | None = None) -> None:
        """Refuse new calls; end streams still running after ``grace`` seconds with an
        error event (default: ``server.shutdown_grace``)."""
        self._closing = True
        delay = self.config.server.shutdown_grace if grace is None else grace
        asyncio.get_running_loop().call_later(delay, self._stop_flights)

    def _sweep_flights(self) -> None:
        """Start the disconnect watch of calls that have run for ``_WATCH_AFTER``; runs
        every ``_WATCH_AFTER`` while any call is in flight."""
        self._sweep = None
        if not self._flights:
            return
        ran_long = time.perf_counter() - _WATCH_AFTER
        for flight in self._flights:
            if flight.started <= ran_long:
                flight.watch_now()
        self._sweep = asyncio.get_running_loop().call_later(_WATCH_AFTER, self._sweep_flights)

    def _stop_flights(self) -> None:
        for flight in list(self._flights):
            flight.stop("shutdown")

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    async def aclose(self) -> None:
        """Close every upstream client."""
        self.metrics.close()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for upstream in self.upstreams.values():
            await upstream.aclose()

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        method: str = scope["method"]
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        record = (
            AccessRecord(method=method, path=path)
            if self.access.enabled and self.access.active()
            else None
        )
        extra: list[tuple[bytes, bytes]] = []
        if self.cors.enabled:
            origin = self.cors.origin_of(headers)
            if origin is not None:
                if method == "OPTIONS":
                    await self._preflight(send, origin, headers, record)
                    self._log(record, started)
                    return
                extra = self.cors.response_headers(origin)
        try:
            status = await self._route(
                scope, receive, send, path, method, headers, extra, started, record
            )
        except GatewayError as exc:
            status = exc.status
            if record is not None:
                record.error = exc.code or exc.type
            await send_error(send, exc, extra, started)
        except Exception:
            # A bug here or in a pipe: still an OpenAI-shaped answer, details only in the log.
            log.exception("request failed: %s %s", method, path)
            status = 500
            if record is not None:
                record.error = "internal_error"
            await send_error(send, _INTERNAL, extra, started)
        if record is not None:
            record.status = status
            self._log(record, started)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _route(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        path: str,
        method: str,
        headers: list[tuple[bytes, bytes]],
        extra: list[tuple[bytes, bytes]],
        started: float,
        record: AccessRecord | None,
    ) -> Awaitable[int]:
        """The handler's awaitable (a plain def: one coroutine frame fewer per request)."""
        if (scope.get("raw_path") or b"").find(b"%") >= 0:  # find: `in` on bytes is slower
            # No route has an escaped byte, and "/v1%2Fembeddings" must not reach a route
            # that a proxy in front may filter as "/v1/embeddings" (RFC 3986 §2.2: an
            # escaped "/" is data, not a separator).
            raise GatewayError(404, f"Invalid URL ({method} {path})", code="unknown_url")
        upstream_path = _MODEL_ROUTES.get(path)
        if upstream_path is not None:
            if method != "POST":
                raise _method_not_allowed(method, path)
            if not self.auth.enabled:
                self._check_client(scope)
            return self._model_call(
                receive, send, path, upstream_path, headers, extra, started, record
            )
        if path in _GET_ROUTES:
            if method != "GET":
                raise _method_not_allowed(method, path)
            if path == "/healthz":
                body = b'{"status":"closing"}' if self._closing else b'{"status":"ok"}'
                return send_whole(
                    send, 503 if self._closing else 200, body, [JSON_HEADER, *extra], started
                )
            if path == "/metrics":
                ctype = (b"content-type", self.metrics.content_type.encode())
                return send_whole(send, 200, self.metrics.render(), [ctype, *extra], started)
            self._check_client(scope)
            caller = self.auth.authenticate(headers)
            body = (
                self._all_models
                if caller is None or caller.all_models
                else _models_body([m for m in self.config.models if caller.may_use(m)])
            )
            return send_whole(send, 200, body, [JSON_HEADER, *extra], started)
        raise GatewayError(404, f"Invalid URL ({method} {path})", code="unknown_url")

    def _check_client(self, scope: Scope) -> None:
        # Without callers the gateway is open to whoever reaches it, so it serves this
        # machine only (the CLI also refuses to bind elsewhere).
        if self.auth.enabled:
            return
        client = scope.get("client")
        if client and not is_loopback_host(str(client[0])):
            raise GatewayError(
                403,
                "this gateway has no callers configured and serves loopback clients only",
                code="loopback_only",
            )

    async def _preflight(
        self,
        send: Send,
        origin: bytes,
        headers: list[tuple[bytes, bytes]],
        record: AccessRecord | None,
    ) -> None:
        answer = self.cors.preflight(origin, headers)
        status = 204 if answer is not None else 403
        await send({"type": "http.response.start", "status": status, "headers": answer or []})
        await send({"type": "http.response.body", "body": b""})
        if record is not None:
            record.status = status

    def _log(self, record: AccessRecord | None, started: float) -> None:
        if record is not None:
            self.access.emit(record, started)

    # ------------------------------------------------------------------ model calls

    async def _model_call(
        self,
        receive: Receive,
        send: Send,
        route: str,
        upstream_path: str,
        headers: list[tuple[bytes, bytes]],
        extra: list[tuple[bytes, bytes]],
        started: float,
        record: AccessRecord | None,
    ) -> int:
        if self._closing:
            raise GatewayError(503, "the gateway is shutting down", code="shutting_down")
        body = await read_body(receive, headers, self.max_body)
        caller = self.auth.authenticate(headers)
        fields = decode_fields(body)
        model = self.dispatcher.models.get(fields.model)
        if model is None:
            raise model_not_found(fields.model)
        if caller is not None and not caller.may_use(fields.model):
            raise GatewayError(
                403,
                f"This key may not use the model '{fields.model}'.",
                param="model",
                code="model_not_allowed",
            )
        call = Call(route, body, fields, caller.name if caller else None, headers)
        flight = Flight(model.on_disconnect == "drain", started)  # positional: no kwargs dict
        call._flight, call._upstream_path = flight, upstream_path
        if record is not None:
            record.model, record.caller = fields.model, call.caller
        self._flights.add(flight)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(_WATCH_AFTER, self._sweep_flights)
        try:
            if call.stream and route in _STREAMING_ROUTES:
                if record is not None:
                    record.stream = True
                return await self._stream_call(call, flight, receive, send, extra, started, record)
            # A non-stream call runs here rather than in a coroutine of its own: one frame
            # fewer to make and to pass through on every resume.
            flight.watch_later(receive)
            try:
                reply = await self._chain(call)
            except GatewayError as exc:
                self.metrics.request(call.model, exc.status)
                raise
            finally:
                flight.end_watch()
        finally:
            self._flights.discard(flight)
        if reply.source is not None:
            # A pipe turned a plain call into a stream: close it rather than leak it.
            await reply.source.response.aclose()
            raise GatewayError(
                500, "a gateway pipe returned a stream for a non-stream call", code="pipe_error"
            )
        await self._answer(call, reply, send, extra, started, record)
        return reply.status

    def _answer(
        self,
        call: Call,
        reply: Reply,
        send: Send,
        extra: list[tuple[bytes, bytes]],
        started: float,
        record: AccessRecord | None,
    ) -> Awaitable[int]:
        """Send a non-stream reply, with its accounting (a plain def: no frame of its own)."""
        content = reply.content or b""
        status = reply.status
        if 200 <= status < 300:
            usage = usage_of(content)
            if usage is not None:
                self._count_tokens(call, usage, record)
        headers = _encoded(reply.headers)
        headers.extend(extra)
        self.metrics.answered(call.model, status, _added(started, reply))
        if record is not None:
            _fill(record, reply)
        return send_whole(send, status, content, headers, started, reply.upstream_time)

    def _count_tokens(
        self, call: Call, usage: tuple[int, int], record: AccessRecord | None
    ) -> None:
        self.metrics.tokens.add(call.caller or "", call.model, usage[0], usage[1])
        if record is not None:
            record.prompt_tokens, record.completion_tokens = usage

    async def _stream_call(
        self,
        call: Call,
        flight: Flight,
        receive: Receive,
        send: Send,
        extra: list[tuple[bytes, bytes]],
        started: float,
        record: AccessRecord | None,
    ) -> int:
        down = Downstream(send, [_SSE_TYPE, *SSE_HEADERS, *extra])
        watcher = asyncio.ensure_future(flight.watch(receive))
        beat = (
            asyncio.ensure_future(heartbeat(down, self.heartbeat)) if self.heartbeat > 0 else None
        )
        try:
            try:
                reply = await self._chain(call)
            except GatewayError as exc:
                _cancel(beat)
                self.metrics.request(call.model, exc.status)
                if not down.started:
                    raise
                if record is not None:
                    record.error = exc.code or exc.type
                if flight.reason != "disconnect":
                    await down.end(error_event(exc))
                return 200
            if reply.source is None:
                _cancel(beat)
                return await self._late_plain(call, reply, down, send, extra, started, record)
            self.metrics.first_token(call.model, time.perf_counter() - started)
            self.metrics.added(call.model, _added(started, reply))
            if record is not None:
                _fill(record, reply)
                record.ttft_ms = round((time.perf_counter() - started) * 1000, 3)
            server_timing = timing(started, reply.upstream_time)
            ctype = next((v for k, v in reply.headers if k == "content-type"), "text/event-stream")
            await down.start(
                reply.status,
                [
                    (b"content-type", ctype.encode("latin-1")),
                    *SSE_HEADERS,
                    *extra,
                    server_timing,
                ],
            )
            outcome = await relay(
                reply,
                down,
                flight,
                strip_usage=not call.fields.wants_usage,
                on_gap=self.metrics.gap_observer(call.model),
            )
        finally:
            _cancel(beat)
            watcher.cancel()
        if outcome.usage is not None:
            self._count_tokens(call, outcome.usage, record)
        status = reply.status if outcome.error is None else outcome.error.status
        self.metrics.request(call.model, 499 if outcome.caller_gone else status)
        if record is not None and outcome.error is not None:
            record.error = outcome.error.code
        if record is not None and outcome.caller_gone:
            record.error = "client_closed"
        return reply.status

    async def _late_plain(
        self,
        call: Call,
        reply: Reply,
        down: Downstream,
        send: Send,
        extra: list[tuple[bytes, bytes]],
        started: float,
        record: AccessRecord | None,
    ) -> int:
        """A stream call that ended without a stream: an upstream error passed on, or an
        upstream that answered a stream request with plain JSON."""
        self.metrics.request(call.model, reply.status)
        if record is not None:
            _fill(record, reply)
        content = reply.content or b""
        if down.started:
            # Headers already went out (a heartbeat); the status can only travel inside.
            message = f"upstream answered {reply.status}"
            err = GatewayError(
                reply.status if reply.status >= 400 else 502, message, code="upstream_status"
            )
            await down.end(error_event(err))
            return 200
        headers = _encoded(reply.headers)
        headers.extend(extra)
        await send_whole(send, reply.status, content, headers, started, reply.upstream_time)
        return reply.status


def _cancel(task: asyncio.Future[Any] | None) -> None:
    if task is not None:
        task.cancel()


def _added(started: float, reply: Reply) -> float:
    """Seconds the gateway itself took so far: since ``started``, less the upstream wait."""
    return max(0.0, time.perf_counter() - started - reply.upstream_time)


def _encoded(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """A reply's headers in ASGI form (a plain loop: no comprehension frame before 3.12)."""
    out = []
    for name, value in headers:
        out.append((name.encode("latin-1"), value.encode("latin-1")))
    return out


def _fill(record: AccessRecord, reply: Reply) -> None:
    record.upstream = reply.upstream
    record.upstream_ms = round(reply.upstream_time * 1000, 3)
    record.retries, record.fallbacks = reply.retries, reply.fallbacks


def _models_body(names: list[str]) -> bytes:
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "aifetch"} for n in names]
    return _encode({"object": "list", "data": data})


def _method_not_allowed(method: str, path: str) -> GatewayError:
    return GatewayError(405, f"Method {method} is not allowed on {path}", code="method_not_allowed")
