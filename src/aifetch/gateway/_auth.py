"""Caller authentication: gateway keys from ``Authorization: Bearer``, ``api-key`` or
``x-api-key`` (what Anthropic's SDKs send).

Keys are looked up in a dict keyed by the key bytes. A dict probe compares 64-bit hashes
(SipHash) before any bytes, and compares bytes only when a guess's whole hash equals a real
key's: how long a lookup takes shows at most a few bits of a real key's hash (which slots
are taken), never how many leading characters of a guess are right. A match is then
confirmed with ``hmac.compare_digest`` (constant time). A SHA-256 digest as the dict key
gave the same property for ~11k more CPU instructions per request (bench/README.md). A
key never appears in a message or a log line.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Sequence

from . import _codes as codes
from ._config import CallerConfig, is_loopback_host
from ._context import Handler, RequestContext
from ._errors import GatewayError

__all__ = ["Authenticator", "Caller", "Gate", "bearer_token"]


class Caller:
    __slots__ = ("all_models", "key", "models", "name")

    def __init__(self, config: CallerConfig) -> None:
        self.name = config.name
        self.key = config.key.encode()
        self.all_models = "*" in config.models
        self.models = frozenset(config.models)

    def may_use(self, model: str) -> bool:
        return self.all_models or model in self.models


# Each rejection raises a new exception: raising one shared instance again would chain
# every raise's traceback onto it, keeping each failed request's frames (and the key it
# presented) alive for the life of the process.
def _missing() -> GatewayError:
    return codes.MISSING_API_KEY(
        "You didn't provide an API key. Send it as 'Authorization: Bearer <key>', "
        "'api-key: <key>' or 'x-api-key: <key>'."
    )


def _wrong() -> GatewayError:
    return codes.INVALID_API_KEY("Incorrect API key provided.")


def bearer_token(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The token of ``Authorization: Bearer <token>``, if any."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
    return None


class Authenticator:
    """Finds the caller a request's key belongs to; a no-op when no callers are configured."""

    def __init__(self, callers: Sequence[CallerConfig]) -> None:
        self.enabled = bool(callers)
        self._by_key = {c.key.encode(): Caller(c) for c in callers}

    def authenticate(self, headers: list[tuple[bytes, bytes]]) -> Caller | None:
        """The caller, ``None`` when auth is off; raises a 401 GatewayError otherwise."""
        if not self.enabled:
            return None
        key = None
        for name, value in headers:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer" and token.strip():
                    key = token.strip()
                    break
            elif (name == b"api-key" or name == b"x-api-key") and value.strip():
                key = value.strip()
                break
        if key is None:
            raise _missing()
        caller = self._by_key.get(key)
        if caller is None or not hmac.compare_digest(caller.key, key):
            raise _wrong()
        return caller


class Gate:
    """The stage that says who is calling, from the request's headers alone (before any
    body is read): the caller whose key it is, or, with no callers configured, anyone on
    this machine; a client elsewhere then gets 403 (the CLI also refuses to listen on a
    non-loopback address without callers)."""

    next: Handler

    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    def __call__(self, ctx: RequestContext) -> Awaitable[None]:
        if self.auth.enabled:
            caller = ctx.caller = self.auth.authenticate(ctx.headers)
            ctx.caller_name = None if caller is None else caller.name
        else:
            client = ctx.scope.get("client")
            if client and not is_loopback_host(str(client[0])):
                raise codes.LOOPBACK_ONLY(
                    "this gateway has no callers configured and serves loopback clients only"
                )
        return self.next(ctx)
