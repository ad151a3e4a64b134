"""Caller authentication: gateway keys from ``Authorization: Bearer``, ``api-key`` or
``x-api-key`` (what Anthropic's SDKs send).

Keys are looked up in a dict keyed by the key bytes. A dict probe compares 64-bit hashes
(SipHash) before any bytes, and compares bytes only when a guess's whole hash equals a real
key's: how long a lookup takes shows at most a few bits of a real key's hash (which slots
are taken), never how many leading characters of a guess are right. A match is then
confirmed with ``hmac.compare_digest`` (constant time). A SHA-256 digest as the dict key
gave the same property for ~11k more CPU instructions per request (bench/README.md). A
key never appears in a message or a log line.

With governance on, a key that is no config caller's is looked up among the virtual keys
(``Governor.identify``: a keyed hash of the key, probed in a snapshot), and the gate puts
the request's governance identity on the context.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from . import _codes as codes
from ._config import CallerConfig, is_loopback_host
from ._context import Handler, RequestContext
from ._errors import GatewayError
from .governance import Identity

if TYPE_CHECKING:
    from .governance import Governor

__all__ = ["Authenticator", "Caller", "Gate", "bearer_token"]


class Caller:
    __slots__ = ("all_models", "identity", "key", "models", "name")

    def __init__(self, config: CallerConfig, identity: Identity | None = None) -> None:
        self.name = config.name
        self.key = config.key.encode()
        self.all_models = "*" in config.models
        self.models = frozenset(config.models)
        self.identity = identity  # its limits, when governance is on

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
    """Finds the caller a request's key belongs to: a config caller, else (with a
    ``governor`` that has virtual keys) a virtual key's identity. A no-op when neither
    callers nor virtual keys are configured."""

    def __init__(self, callers: Sequence[CallerConfig], governor: Governor | None = None) -> None:
        governing = governor if governor is not None and governor.enabled else None
        self.governed = governing is not None
        self._virtual: Callable[[bytes], Identity | None] | None = None
        if governing is not None and governing.keys is not None:
            self._virtual = governing.identify
        self.enabled = bool(callers) or self._virtual is not None
        self._by_key = {
            c.key.encode(): Caller(c, governing.caller(c.name) if governing else None)
            for c in callers
        }

    def authenticate(self, headers: list[tuple[bytes, bytes]]) -> Caller | Identity | None:
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
        if caller is not None and hmac.compare_digest(caller.key, key):
            return caller
        if self._virtual is not None:
            virtual = self._virtual(key)
            if virtual is not None:
                return virtual
        raise _wrong()


class Gate:
    """The stage that says who is calling, from the request's headers alone (before any
    body is read): the caller whose key it is, or, with no callers (nor virtual keys)
    configured, anyone on this machine; a client elsewhere then gets 403 (the CLI also
    refuses to listen on a non-loopback address without callers). With governance on it
    also notes whose limits and ledger rows the request counts against."""

    next: Handler

    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    def __call__(self, ctx: RequestContext) -> Awaitable[None]:
        if self.auth.enabled:
            caller = ctx.caller = self.auth.authenticate(ctx.headers)
            if caller is not None:
                ctx.caller_name = caller.name
                if self.auth.governed:
                    ctx.identity = caller if isinstance(caller, Identity) else caller.identity
        else:
            client = ctx.scope.get("client")
            if client and not is_loopback_host(str(client[0])):
                raise codes.LOOPBACK_ONLY(
                    "this gateway has no callers configured and serves loopback clients only"
                )
        return self.next(ctx)
