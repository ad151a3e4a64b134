"""What flows through one model call: the ``Call`` pipes see, the ``Reply`` they get back,
and the ``Flight`` that lets a disconnect or a shutdown stop the call from outside."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from aifetch import AbortController, AbortSignal

if TYPE_CHECKING:
    import aifetch
    from aifetch.sse import ServerSentEvent, SSEBlockSplitter

    from ._parse import RoutingFields

__all__ = ["Call", "EventHook", "Flight", "Next", "Pipe", "Reply", "StreamSource"]

_encode = msgspec.json.Encoder().encode
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

# A stream hook sees each event after the commit point. It returns the event to relay
# (the same object: the upstream's bytes go out untouched; a new one: it is re-encoded),
# or None to drop it.
EventHook = Callable[["ServerSentEvent"], "ServerSentEvent | None"]


class Call:
    """One model call as gateway pipes see it.

    ``body`` decodes the caller's JSON lazily, on first access, and from then on the
    gateway re-encodes it before sending: a pipe that never touches it costs nothing.
    ``model`` is the public model name; a pipe may change it to another configured name.
    """

    __slots__ = (
        "_body",
        "_flight",
        "_raw",
        "_upstream_path",
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
        raw: bytes,
        fields: RoutingFields,
        caller: str | None,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.route = route
        self._raw = raw
        self._body: dict[str, Any] | None = None
        self.fields = fields
        self.model = fields.model
        # Whether the caller asked for a stream (read once from the body as sent).
        self.stream = bool(fields.stream)
        self.caller = caller
        # The caller's request headers (ASGI form, names lower-case), for inspection only:
        # none of them is forwarded upstream.
        self.headers = headers
        self.extensions: dict[str, Any] = {}
        # Set by the gateway for the end of the pipe chain (not for pipes).
        self._flight: Flight | None = None
        self._upstream_path = ""

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
    # The upstream's secrets, scrubbed from an error event's message before it is passed on.
    secrets: tuple[bytes, ...] = ()


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


class Flight(AbortController):
    """One call in flight, stoppable from outside: the caller went away, or shutdown came.

    ``reason`` is ``None`` while the call runs, then ``"disconnect"`` or ``"shutdown"``.
    The flight is the abort controller of every upstream attempt of its call: stopping it
    aborts the attempt in progress unless the model drains, and a stopped flight makes no
    further attempt. It also watches for its caller's disconnect: at once for a stream
    (``watch``), or, for a non-stream call, only once the call has run for a while
    (``watch_later``; the app's sweep calls ``watch_now``): most end sooner and never pay
    for a task.
    """

    __slots__ = ("_event", "_receive", "_watcher", "drain", "reason", "started")

    def __init__(self, drain: bool = False, started: float = 0.0) -> None:
        self.signal = AbortSignal()  # AbortController's own state, without a super() call
        self.reason: str | None = None
        self.drain = drain
        self.started = started  # time.perf_counter() when the request arrived
        self._event: Any = None
        self._receive: Receive | None = None
        self._watcher: asyncio.Task[None] | None = None

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            if self._event is not None:
                self._event.set()
        # A drained call keeps reading after the caller left (for usage); a shutdown
        # always ends it, draining or not.
        if reason == "shutdown" or not self.drain:
            self.abort(reason)

    async def watch(self, receive: Receive) -> None:
        """Stop the flight when the caller goes away (ASGI ``http.disconnect``)."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.stop("disconnect")
                return

    def watch_later(self, receive: Receive) -> None:
        """Have ``watch_now`` start ``watch`` with ``receive``, unless ``end_watch`` comes
        first."""
        self._receive = receive

    def watch_now(self) -> None:
        receive, self._receive = self._receive, None
        if receive is not None:
            self._watcher = asyncio.ensure_future(self.watch(receive))

    def end_watch(self) -> None:
        self._receive = None
        if self._watcher is not None:
            self._watcher.cancel()

    async def pause(self, delay: float) -> bool:
        """Sleep ``delay`` seconds; ``False`` if the flight was stopped meanwhile."""
        if self.reason is not None:
            return False
        if self._event is None:
            self._event = asyncio.Event()
        try:
            await asyncio.wait_for(self._event.wait(), delay)
        except TimeoutError:
            return True
        return False
