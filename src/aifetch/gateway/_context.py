"""One request's life in the gateway: the context every stage takes.

It is made once per request by the app's ASGI entry and handed down the stages
(docs/ARCHITECTURE.md, "The request path"). What a stage learns it writes here (the caller,
the flight, the model, the outcome), and what runs at the end (the access log, metrics)
reads it from here, so no stage passes another a list of parameters or reaches into its
private state.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._auth import Caller
    from ._call import Reply
    from ._flight import Flight
    from ._messages_in import Native
    from ._parse import RoutingFields
    from ._usage import Usage
    from .governance import Admission, Identity

__all__ = ["Handler", "Receive", "RequestContext", "Scope", "Send", "Stage", "stages"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
# A stage, or the handler at the end of a chain: takes the request, answers it or passes it.
Handler = Callable[["RequestContext"], Awaitable[None]]


class RequestContext:
    """The request as the stages share it, and what became of it."""

    __slots__ = (
        "_request_id",
        "admission",
        "answer_headers",
        "body",
        "caller",
        "caller_name",
        "dialect",
        "error",
        "fallbacks",
        "fields",
        "flight",
        "headers",
        "identity",
        "method",
        "model",
        "native",
        "path",
        "pin",
        "receive",
        "retries",
        "route",
        "scope",
        "send",
        "started",
        "status",
        "stream",
        "ttft",
        "upstream",
        "upstream_time",
        "usage",
        "wire",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.started = time.perf_counter()
        self.method: str = scope["method"]
        self.path = path  # without the mount's root_path
        # The model route the call runs as (a dialect stage may run /v1/messages as a chat
        # completion), and the caller's wire format, for the log and the ledger.
        self.route = path
        self.dialect = "openai"
        # What a dialect stage kept of the caller's own request, for a byte-exact relay to
        # an upstream of the same dialect (``_kinds``).
        self.native: Native | None = None
        # The one upstream this call must go to (a Responses call continuing a response).
        self.pin: str | None = None
        self.headers: list[tuple[bytes, bytes]] = scope["headers"]
        # Headers every answer to this request carries (CORS adds its own here).
        self.answer_headers: list[tuple[bytes, bytes]] = []
        # Who is calling: a config caller, or a virtual key (its governance identity).
        self.caller: Caller | Identity | None = None
        self.caller_name: str | None = None  # the caller's name, set with ``caller``
        # Whose limits and ledger rows this call counts against (set by the gate when
        # governance is on: the config caller's identity, or the virtual key's).
        self.identity: Identity | None = None
        self.admission: Admission | None = None  # what the limits stage reserved
        self._request_id: str | None = None
        self.body = b""  # a model call's body, once read (ReadBody)
        self.fields: RoutingFields | None = None  # and what the gateway routes on
        self.flight: Flight | None = None
        self.model: str | None = None  # the public model name, once it is known to exist
        self.stream = False
        # The outcome, filled as it becomes known.
        self.status = 0
        self.error: str | None = None  # the error code, for the log
        self.upstream: str | None = None
        self.upstream_time = 0.0  # seconds spent waiting on upstreams before the answer
        self.retries = self.fallbacks = 0
        self.ttft: float | None = None  # seconds to the first content event of a stream
        self.usage: Usage | None = None
        self.wire = "openai"  # the wire format of the answer's bytes (``Reply.wire``)

    @property
    def request_id(self) -> str:
        """A short random id for this request, made when first asked for (only what needs
        one pays for it: the ledger's row and the answer's ``x-aifetch-request-id``)."""
        if self._request_id is None:
            # 64 random bits: unique enough for a fleet's ledger, in 0.25 µs where
            # secrets.token_hex(8) takes 0.45 (a system call per id); not a secret, and the
            # module's generator is re-seeded in a forked child.
            self._request_id = f"{random.getrandbits(64):016x}"
        return self._request_id

    @property
    def request_id_made(self) -> str | None:
        """The request id if something made one, else ``None`` (never makes one)."""
        return self._request_id

    def took(self, reply: Reply) -> None:
        """Note where the upstream part of the answer came from and what it cost."""
        self.upstream = reply.upstream
        self.upstream_time = reply.upstream_time
        self.retries, self.fallbacks = reply.retries, reply.fallbacks
        self.wire = reply.wire

    def added(self) -> float:
        """Seconds the gateway itself took so far: since arrival, less the upstream wait."""
        return max(0.0, time.perf_counter() - self.started - self.upstream_time)


class Stage(Protocol):
    """A step of the request path with one job; ``next`` is the rest of the path."""

    next: Handler

    def __call__(self, ctx: RequestContext) -> Awaitable[None]: ...


def stages(*steps: Stage, end: Handler) -> Handler:
    """The request path as one handler: ``steps`` in order, the first outermost, then
    ``end``. Linked once, when the app is made; a stage that only looks at the request
    returns ``next``'s awaitable from a plain ``def`` and adds no coroutine frame."""
    handler = end
    for step in reversed(steps):
        step.next = handler
        handler = step
    return handler
