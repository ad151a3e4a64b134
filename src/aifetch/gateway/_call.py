"""What flows through one model call: the ``Call`` pipes see and the ``Reply`` they get
back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from ._parse import RoutingFields, decode_fields
from ._secrets import Secrets
from ._slots import Slot

if TYPE_CHECKING:
    import aifetch
    from aifetch.sse import ServerSentEvent, SSEBlockSplitter

    from ._context import RequestContext
    from ._rules import StreamRules

__all__ = [
    "CALL_ROUTES",
    "CHAT",
    "MESSAGES",
    "MODEL_ROUTES",
    "RESPONSES",
    "STREAMING_ROUTES",
    "UPSTREAM_PATHS",
    "USAGE_ROUTES",
    "Call",
    "EventHook",
    "Next",
    "Pipe",
    "Reply",
    "StreamSource",
]

_encode = msgspec.json.Encoder().encode

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
# A /v1/messages call relayed byte-exact to an anthropic upstream (``_kinds``); every
# other /v1/messages call runs as a chat completion (``_messages_in``).
MESSAGES = "/v1/messages"

# The plain model routes (each served by the same stages) → the path each one calls under
# an upstream's base_url.
MODEL_ROUTES = {
    CHAT: "/chat/completions",
    "/v1/completions": "/completions",
    "/v1/embeddings": "/embeddings",
}
# Every route a call may have (a pipe's own call too), and the upstream path of each; the
# Responses API is served by OpenAI-kind upstreams only.
CALL_ROUTES = frozenset({*MODEL_ROUTES, RESPONSES})
UPSTREAM_PATHS = {**MODEL_ROUTES, RESPONSES: "/responses", MESSAGES: MESSAGES}
STREAMING_ROUTES = frozenset({CHAT, "/v1/completions", RESPONSES})
# The streaming routes whose usage comes only when asked (stream_options.include_usage);
# the Responses API always reports it, in response.completed.
USAGE_ROUTES = frozenset({CHAT, "/v1/completions"})

# A stream hook sees each event after the commit point. It returns the event to relay
# (the same object: the upstream's bytes go out untouched; a new one: it is re-encoded),
# or None to drop it.
EventHook = Callable[["ServerSentEvent"], "ServerSentEvent | None"]


class Call:
    """One model call as gateway pipes see it.

    ``body`` decodes the caller's JSON lazily, on first access, and from then on the
    gateway re-encodes it before sending: a pipe that never touches it costs nothing.
    ``model`` is the public model name; a pipe may change it to another configured name.

    A pipe may also make a call of its own and pass it to ``next``, for example
    ``await next(Call(call.route, {"model": "small", "messages": [...]}, call.caller))``;
    it runs as part of the same request (a disconnect or shutdown stops it too).
    """

    _body: dict[str, Any] | None
    __slots__ = (
        "_body",
        "_raw",
        "caller",
        "extensions",
        "fields",
        "headers",
        "model",
        "route",
        "stream",
    )

    def __init__(
        self,
        route: str,
        body: bytes | dict[str, Any],
        caller: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.route = route
        if isinstance(body, dict):
            self._raw = _encode(body)
            self._fill(decode_fields(self._raw), caller, headers or [])
            self._body = body
        else:
            self._raw = body
            self._fill(decode_fields(body), caller, headers or [])

    @classmethod
    def of_request(cls, ctx: RequestContext) -> Call:
        """The caller's own call, from the fields the body stage already read."""
        call = cls.__new__(cls)
        assert ctx.fields is not None  # read by the body stage before the model call
        call.route, call._raw = ctx.route, ctx.body
        call._fill(ctx.fields, ctx.caller_name, ctx.headers)
        return call

    def _fill(
        self, fields: RoutingFields, caller: str | None, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self._body = None
        self.fields = fields
        self.model = fields.model
        # Whether the caller asked for a stream (read once from the body as sent).
        self.stream = bool(fields.stream)
        self.caller = caller
        # The caller's request headers (ASGI form, names lower-case), for inspection only:
        # none of them is forwarded upstream.
        self.headers = headers
        self.extensions: dict[str, Any] = {}

    @property
    def body(self) -> dict[str, Any]:
        if self._body is None:
            decoded = msgspec.json.decode(self._raw)
            self._body = decoded if isinstance(decoded, dict) else {}
        return self._body

    def header(self, name: str) -> str | None:
        """The first value of request header ``name`` (case-insensitive)."""
        key = name.lower().encode("latin-1")
        for k, v in self.headers:
            if k == key:
                return v.decode("latin-1")
        return None

    def raw_body(self) -> bytes:
        """The body as it will be sent (re-encoded only if a pipe looked at ``body``)."""
        if self._body is None:
            return self._raw
        return _encode(self._body)

    def __repr__(self) -> str:
        return f"Call({self.route} model={self.model!r} caller={self.caller!r})"


@dataclass(slots=True)
class StreamSource:
    """An upstream stream past its commit point: the open response and what was read."""

    response: aifetch.AsyncResponse
    chunks: AsyncIterator[bytes]
    splitter: SSEBlockSplitter
    # Blocks read up to and including the first content event (and any after it in the
    # same read), relayed first.
    held: list[bytes]
    # What the stream's events mean (its wire format): for the relay.
    rules: StreamRules
    # The configured secrets, scrubbed from every byte relayed.
    secrets: Secrets = field(default_factory=lambda: Secrets(()))
    # The upstream's connection slot this stream holds until it is closed.
    slot: Slot | None = None

    async def close(self) -> None:
        """Close the upstream response and give its slot back (idempotent)."""
        await self.response.aclose()
        if self.slot is not None:
            self.slot.release()


@dataclass(slots=True)
class Reply:
    """The outcome of a call as pipes see it on the way back.

    Non-stream: ``content`` holds the whole body. Stream: ``source`` is the open upstream
    stream; register ``on_event`` hooks to observe or change events as they pass.
    """

    status: int
    headers: list[tuple[str, str]]
    content: bytes | None = None
    source: StreamSource | None = None
    upstream: str | None = None
    upstream_model: str | None = None
    retries: int = 0
    fallbacks: int = 0
    upstream_time: float = 0.0
    hooks: list[EventHook] = field(default_factory=list)
    # The wire format of ``content`` or the stream, on the caller's side: "openai", or
    # "anthropic" for a /v1/messages call relayed byte-exact to an anthropic upstream.
    wire: str = "openai"

    @property
    def stream(self) -> bool:
        return self.source is not None

    def on_event(self, hook: EventHook) -> None:
        """Run ``hook`` on each event of the stream as it passes (not buffered)."""
        self.hooks.append(hook)

    def json(self) -> Any:
        """The non-stream body decoded (``None`` for streams)."""
        return None if self.content is None else msgspec.json.decode(self.content)

    def set_json(self, value: Any) -> None:
        """Replace the non-stream body."""
        self.content = _encode(value)


Next = Callable[[Call], Awaitable[Reply]]
Pipe = Callable[[Call, Next], Awaitable[Reply]]
