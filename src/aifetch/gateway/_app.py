"""The gateway as a plain ASGI application.

No framework sits on the hot path (raw ASGI served 1.35-1.46x the req/s of Starlette on
this hardware; docs/ARCHITECTURE.md). The ASGI entry makes the request's context, runs it
down the request path (the stages, listed in order in ``__init__``), turns any error into
an OpenAI-shaped answer at this one edge, and writes the access log and the ledger row.
Mounted under a prefix (``app.mount("/ai", gateway)``), ``root_path`` is stripped first.
"""

from __future__ import annotations

import contextlib
import logging

from . import _codes as codes
from ._accesslog import AccessLog
from ._admin_route import ADMIN_PREFIX, AdminRoute
from ._auth import Authenticator, Gate
from ._body import ReadBody
from ._call import MESSAGES, MODEL_ROUTES, RESPONSES
from ._config import GatewayConfig
from ._context import Handler, Receive, RequestContext, Scope, Send, Stage, stages
from ._cors import Cors
from ._count_tokens import COUNT_TOKENS_PATH, CountTokens
from ._dispatch import Dispatcher
from ._errors import GatewayError
from ._flight import Flights
from ._ledger import LedgerRows
from ._limits import Limits
from ._messages_in import MessagesIn
from ._messages_out import MessagesOut
from ._metrics import Metrics
from ._model_call import ModelCall
from ._pipes import PipeChain, load_pipes
from ._respond import send_error
from ._response_ids import response_ids_for
from ._responses import PREFIX, ResponseById, ResponsesIn
from ._routes import ANY_METHOD, Health, MetricsPage, ModelList, Route, Router
from ._static import StaticFile, static_paths
from ._upstream import Upstream, configured_secrets
from .governance import Governor, governance_active

__all__ = ["GatewayApp", "create_app"]

log = logging.getLogger("aifetch.gateway")


def create_app(config: GatewayConfig) -> GatewayApp:
    """The gateway's ASGI application for ``config``."""
    return GatewayApp(config)


class GatewayApp:
    """An OpenAI-compatible gateway; an ASGI 3 callable.

    Start it with ``await app.start()`` and close it with ``await app.aclose()`` (the ASGI
    lifespan does both when the server sends lifespan events; a host app that mounts it
    should call them on its own start-up and shutdown).
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.governor = governor = Governor(config)
        if governor.needs_start:
            self.metrics.registry.register(governor.metrics)
        secrets = configured_secrets(config)
        # Several callers (or virtual keys): each gets a fair share of every upstream's
        # connections, and none may continue a response the gateway cannot tell is theirs.
        self.tenants = tenants = len(config.callers) > 1 or config.keys is not None
        self.upstreams = {
            name: Upstream(name, cfg, secrets, tenants) for name, cfg in config.upstreams.items()
        }
        self.auth = Authenticator(config.callers, governor)
        self.flights = Flights(config.server.heartbeat)
        self.access = AccessLog(config.server.access_log)
        self.ledger = LedgerRows(governor) if governor.ledger is not None else None
        self.limits = Limits(governor) if governance_active(config) else None
        self.response_ids = response_ids_for(governor, self.upstreams)
        dispatcher = Dispatcher(self.upstreams, dict(config.models), self.metrics)
        chain = PipeChain(load_pipes(config.pipes), dispatcher)
        # The request path, outermost first (docs/ARCHITECTURE.md, "The request path").
        # A stage that is off is left out, not skipped per request.
        outer: list[Stage] = [Cors(config.cors)] if config.cors.allow_origins else []
        router = Router(self._routes(chain), self._prefix_routes())
        self.handle: Handler = stages(*outer, end=router)

    def _routes(self, chain: PipeChain) -> dict[str, Route]:
        """Each route, with the stages of its own."""
        config = self.config
        call = ModelCall(config, chain, self.metrics, self.flights)
        read = ReadBody(config.limits, self.flights)
        limits = self._governance()
        model_call = stages(Gate(self.auth), read, *limits, end=call)
        routes = {path: Route("POST", model_call) for path in MODEL_ROUTES}
        # The dialect routes (docs/DIALECTS.md): the Anthropic Messages API in front of any
        # model, out (outermost: every answer, errors too) and in (after the body).
        messages = stages(
            MessagesOut(), Gate(self.auth), self._read(read), MessagesIn(), *limits, end=call
        )
        routes[MESSAGES] = Route("POST", messages)
        counting = CountTokens(config.models, self.upstreams)
        count = stages(MessagesOut(), Gate(self.auth), self._read(read), end=counting)
        routes[COUNT_TOKENS_PATH] = Route("POST", count)
        responses = ResponsesIn(self.response_ids, tenants=self.tenants)
        routes[RESPONSES] = Route(
            "POST", stages(Gate(self.auth), self._read(read), responses, *limits, end=call)
        )
        model_list = stages(Gate(self.auth), end=ModelList(list(config.models)))
        routes["/v1/models"] = Route("GET", model_list)
        routes["/healthz"] = Route("GET", Health(self.flights))
        routes["/metrics"] = Route("GET", MetricsPage(self.metrics, config.server.metrics_key))
        for path in static_paths(config.server.playground):  # /aifetch.js, the playground
            routes[path] = Route("GET", StaticFile(path))
        if self.governor.admin is not None:
            routes[ADMIN_PREFIX] = Route(ANY_METHOD, AdminRoute(self.governor.admin))
        return routes

    def _read(self, first: ReadBody) -> ReadBody:
        """Another route's body stage, sharing ``first``'s budget of buffered bytes."""
        return ReadBody(self.config.limits, self.flights, first.budget)

    def _prefix_routes(self) -> dict[str, Route]:
        """Routes by path prefix (looked at only when no exact path matches): a stored
        response by its id, and the admin routes of one virtual key."""
        by_id = ResponseById(self.response_ids, self.upstreams)
        prefixes = {PREFIX: Route(ANY_METHOD, stages(Gate(self.auth), end=by_id))}
        if self.governor.admin is not None:
            prefixes[ADMIN_PREFIX + "/"] = Route(ANY_METHOD, AdminRoute(self.governor.admin))
        return prefixes

    def _governance(self) -> list[Stage]:
        """A model call's governance stage after its body is read: its limits, when
        configured. (Its ledger row is written at the edge, beside the access log.)"""
        return [self.limits] if self.limits is not None else []

    # ------------------------------------------------------------------ lifecycle

    def begin_shutdown(self, grace: float | None = None) -> None:
        """Refuse new calls; end streams still running after ``grace`` seconds with an
        error event (default: ``server.shutdown_grace``)."""
        self.flights.close(self.config.server.shutdown_grace if grace is None else grace)

    @property
    def in_flight(self) -> int:
        return len(self.flights)

    async def start(self) -> None:
        """Start governance (connect the ledger database, load the virtual keys, start the
        writers, check the shared state store); a no-op without it."""
        if self.governor.needs_start:
            await self.governor.start()

    async def aclose(self) -> None:
        """Close every upstream client; write the settlements and ledger rows still
        waiting."""
        self.metrics.close()  # a worker's last metrics snapshot (--workers)
        self.flights.cancel_sweep()
        for upstream in self.upstreams.values():
            await upstream.aclose()
        if self.governor.needs_start:
            await self.governor.aclose()

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        ctx = RequestContext(scope, receive, send, path)
        try:
            await self.handle(ctx)
        except GatewayError as exc:
            if self.ledger is not None:
                self.ledger.tag(ctx)
            await send_error(ctx, exc)
        except Exception:
            # A bug here or in a pipe: still an OpenAI-shaped answer, details only in the log.
            log.exception("request failed: %s %s", ctx.method, path)
            if self.ledger is not None:
                self.ledger.tag(ctx)
            await send_error(ctx, codes.INTERNAL("The gateway failed to handle the request."))
        finally:
            if ctx.admission is not None and self.limits is not None:
                self.limits.settle(ctx)  # once, whatever ended the call
        if self.ledger is not None:  # first: it makes the request id the log line names
            self.ledger.emit(ctx)
        if self.access.enabled and self.access.active():
            self.access.emit(ctx)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    # The error's own words (a schema to migrate, a database refusing):
                    # the URL is not repeated, as a DSN may hold a password.
                    reason = f"governance could not start: {type(exc).__name__}: {exc}"
                    log.error("%s", reason)
                    with contextlib.suppress(Exception):
                        await self.governor.aclose()
                    await send({"type": "lifespan.startup.failed", "message": reason})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
