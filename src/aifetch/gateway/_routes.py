"""The route table, and the small answers that need no upstream.

Routes are an exact-match table of paths, plus a few prefix routes (``/admin/keys/<name>``)
looked at only when no exact path matches; anything else is an OpenAI-shaped 404, and a
known path with another method a 405 (a route of method ``"*"`` checks methods itself).
Each route's handler is its own chain of stages (``_app.py`` builds the table).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Mapping
from typing import NamedTuple

import msgspec

from . import _codes as codes
from ._auth import bearer_token
from ._config import is_loopback_host
from ._context import Handler, RequestContext
from ._flight import Flights
from ._metrics import Metrics
from ._respond import JSON_HEADER, send_whole

__all__ = ["ANY_METHOD", "Health", "MetricsPage", "ModelList", "Route", "Router"]

_encode = msgspec.json.Encoder().encode


class Route(NamedTuple):
    method: str
    handler: Handler


ANY_METHOD = "*"


class Router:
    """The last stage of the path: the request's route, or 404/405."""

    def __init__(
        self, routes: Mapping[str, Route], prefixes: Mapping[str, Route] | None = None
    ) -> None:
        self.routes = dict(routes)
        self.prefixes = tuple((prefixes or {}).items())

    def __call__(self, ctx: RequestContext) -> Awaitable[None]:
        if (ctx.scope.get("raw_path") or b"").find(b"%") >= 0:  # find: `in` on bytes is slower
            # No route has an escaped byte, and "/v1%2Fembeddings" must not reach a route
            # that a proxy in front may filter as "/v1/embeddings" (RFC 3986 §2.2: an
            # escaped "/" is data, not a separator).
            raise _unknown(ctx)
        route = self.routes.get(ctx.path)
        if route is None:
            route = self._by_prefix(ctx.path)
            if route is None:
                raise _unknown(ctx)
        if ctx.method != route.method and route.method != ANY_METHOD:
            raise codes.METHOD_NOT_ALLOWED(f"Method {ctx.method} is not allowed on {ctx.path}")
        return route.handler(ctx)

    def _by_prefix(self, path: str) -> Route | None:
        for prefix, route in self.prefixes:
            if path.startswith(prefix):
                return route
        return None


def _unknown(ctx: RequestContext) -> Exception:
    return codes.UNKNOWN_URL(f"Invalid URL ({ctx.method} {ctx.path})")


class Health:
    """``GET /healthz``: 200 while serving, 503 once shutdown began (load balancers stop
    sending new calls)."""

    def __init__(self, flights: Flights) -> None:
        self.flights = flights

    def __call__(self, ctx: RequestContext) -> Awaitable[None]:
        if self.flights.closing:
            return send_whole(ctx, 503, b'{"status":"closing"}', [JSON_HEADER])
        return send_whole(ctx, 200, b'{"status":"ok"}', [JSON_HEADER])


class MetricsPage:
    """``GET /metrics``: the Prometheus exposition, which names every caller's usage, so
    no caller's key opens it. With ``server.metrics_key`` it takes that key (Bearer) from
    anywhere; without one, a client on this machine that is not a proxy passing on
    someone else's request (a forwarding header says so)."""

    def __init__(self, metrics: Metrics, key: str | None) -> None:
        self.metrics = metrics
        self.key = key.encode() if key else None
        self.content_type = (b"content-type", metrics.content_type.encode())

    def __call__(self, ctx: RequestContext) -> Awaitable[None]:
        if self.key is not None:
            presented = bearer_token(ctx.headers)
            if presented is None:
                raise codes.MISSING_API_KEY("/metrics takes the metrics key as a Bearer token.")
            if not hmac.compare_digest(presented, self.key):
                raise codes.INVALID_API_KEY("Incorrect metrics key provided.")
        elif not _local_and_direct(ctx):
            raise codes.METRICS_FORBIDDEN(
                "/metrics answers this machine only; set server.metrics_key to scrape it "
                "from elsewhere."
            )
        return send_whole(ctx, 200, self.metrics.render(), [self.content_type])


_FORWARDING = frozenset({b"forwarded", b"x-forwarded-for", b"x-real-ip", b"via"})


def _local_and_direct(ctx: RequestContext) -> bool:
    client = ctx.scope.get("client")
    if client and not is_loopback_host(str(client[0])):
        return False
    return not any(name in _FORWARDING for name, _ in ctx.headers)


class ModelList:
    """``GET /v1/models``: the configured public names the caller may use."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.everything = _models_body(names)

    def __call__(self, ctx: RequestContext) -> Awaitable[None]:
        caller = ctx.caller
        if caller is None or caller.all_models:
            body = self.everything
        else:
            body = _models_body([name for name in self.names if caller.may_use(name)])
        return send_whole(ctx, 200, body, [JSON_HEADER])


def _models_body(names: list[str]) -> bytes:
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "aifetch"} for n in names]
    return _encode({"object": "list", "data": data})
