"""CORS (Fetch standard §3.2): preflight answers and the headers an allowed origin gets,
so a browser app can call the gateway directly with its own short-lived gateway key."""

from __future__ import annotations

from collections.abc import Awaitable

from ._config import CorsConfig
from ._context import Handler, RequestContext

__all__ = ["Cors"]

_METHODS = b"GET, POST, DELETE, OPTIONS"
# What a page may read of an answer: the timing, the waits and limits a retry honours, and
# the request ids (the upstream's, the gateway's ledger row's). (Fetch exposes only the
# CORS-safelisted headers otherwise.)
_EXPOSE = (
    b"server-timing, retry-after, retry-after-ms, x-request-id, request-id, "
    b"x-aifetch-request-id, "
    b"x-ratelimit-limit-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-requests, "
    b"x-ratelimit-remaining-tokens, x-ratelimit-reset-requests, x-ratelimit-reset-tokens"
)


class Cors:
    """The CORS stage: answers an allowed origin's preflight, and gives its other requests
    the headers that let the page read the answer. Not in the path when no origin is
    configured."""

    next: Handler

    def __init__(self, config: CorsConfig) -> None:
        self.enabled = bool(config.allow_origins)
        self.any_origin = "*" in config.allow_origins
        self.origins = frozenset(o.rstrip("/").encode() for o in config.allow_origins)
        names = [h.strip().lower().encode() for h in config.allow_headers]
        self.any_header = b"*" in names
        self.allow_headers = frozenset(n for n in names if not n.endswith(b"*"))
        self.allow_prefixes = tuple(n[:-1] for n in names if n.endswith(b"*") and n != b"*")
        self.max_age = str(config.max_age).encode()

    def __call__(self, ctx: RequestContext) -> Awaitable[None]:
        origin = self.origin_of(ctx.headers)
        if origin is None:
            return self.next(ctx)
        if ctx.method == "OPTIONS":
            return self._preflight(ctx, origin)
        ctx.answer_headers = self.response_headers(origin)
        return self.next(ctx)

    async def _preflight(self, ctx: RequestContext, origin: bytes) -> None:
        answer = self.preflight(origin, ctx.headers)
        ctx.status = 204 if answer is not None else 403
        await ctx.send(
            {"type": "http.response.start", "status": ctx.status, "headers": answer or []}
        )
        await ctx.send({"type": "http.response.body", "body": b""})

    def origin_of(self, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        """The request's Origin when it is allowed, else ``None``."""
        if not self.enabled:
            return None
        for name, value in headers:
            if name == b"origin":
                return value if (self.any_origin or value in self.origins) else None
        return None

    def response_headers(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        # The origin is echoed (not "*") so credentials-mode requests work; Vary keeps
        # shared caches from serving one origin's answer to another.
        return [
            (b"access-control-allow-origin", origin),
            (b"vary", b"origin"),
            (b"access-control-expose-headers", _EXPOSE),
        ]

    def preflight(
        self, origin: bytes, headers: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]] | None:
        """Headers for a 204 preflight answer, or ``None`` if the request asks too much."""
        requested = b""
        for name, value in headers:
            if name == b"access-control-request-headers":
                requested = value
        wanted = [h.strip().lower() for h in requested.split(b",") if h.strip()]
        if not all(self._allowed(h) for h in wanted):
            return None
        # The headers asked for, once each (all allowed): a pattern cannot be echoed.
        allowed = b", ".join(dict.fromkeys(wanted)) if wanted else b"content-type"
        return [
            *self.response_headers(origin),
            (b"access-control-allow-methods", _METHODS),
            (b"access-control-allow-headers", allowed),
            (b"access-control-max-age", self.max_age),
        ]

    def _allowed(self, header: bytes) -> bool:
        return (
            self.any_header
            or header in self.allow_headers
            or any(header.startswith(prefix) for prefix in self.allow_prefixes)
        )
