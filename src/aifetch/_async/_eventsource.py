"""``AsyncEventSource``: a Server-Sent Events stream that reconnects, as HTML §9.2 describes.

The decoding is ``aifetch.sse.SSEDecoder``'s; this module owns the connection's life:
the request headers (§9.2.4 ``Last-Event-ID``), the reconnection time (the ``retry:``
field), the waits between connections, and when to give up for good ("fail the connection").

What ends the stream, case by case:

- The response ends, or the connection breaks (``NetworkError``, ``TimeoutError``): this is
  the SSE model, so it reconnects after the reconnection time (§9.2.3).
- 408, 429 or a 5xx other than 501/505: reconnects, waiting at least ``Retry-After``; a
  ``Retry-After`` longer than ``max_retry`` raises that ``HTTPError`` instead.
- 204 No Content: iteration ends, as the server asked (§9.2.3, the client stops
  reconnecting).
- Any other non-2xx: its ``HTTPError`` is raised ("fail the connection").
- A 2xx that is not ``text/event-stream``: ``ContentTypeError`` ("fail the connection").
- ``max_reconnects`` reconnections in a row without an event: the last error is raised, or a
  ``NetworkError`` when the last connection simply ended.
- The ``signal`` aborts: its error is raised (``AbortError``, or the ``TimeoutError`` of an
  ``AbortSignal.timeout``), also while waiting to reconnect.
- ``aclose()``: iteration ends.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NoReturn

import msgspec

from .._abort import AbortController, AbortSignal
from .._errors import AbortError, ContentTypeError, HTTPError, NetworkError, TimeoutError
from .._headers import Headers, HeadersInit
from .._redact import redact_url
from .._timeouts import TimeoutInit
from .._types import UNSET
from ..sse import ServerSentEvent, SSEDecoder
from ._io import sleep

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ._client import AsyncClient
    from ._response import AsyncResponse

__all__ = ["CLOSED", "CONNECTING", "OPEN", "AsyncEventSource", "reconnect_delay"]

# 501 Not Implemented and 505 HTTP Version Not Supported will not change by waiting; the
# rest of 5xx (Cloudflare's 520-524 included), 408 and 429 are worth another try.
_PERMANENT_5XX = frozenset({501, 505})
# The exponential growth starts from at least this many seconds, so a server that sets
# ``retry: 0`` and then keeps failing is not hammered in a tight loop.
_MIN_BACKOFF_BASE = 0.01
_MAX_EXPONENT = 32


# ``readyState`` (HTML §9.2.2): plain ints with the spec's values, as the DOM has them. The
# sync module is generated from this one, so an enum here would be two unequal enum types.
CONNECTING: Final = 0
OPEN: Final = 1
CLOSED: Final = 2
_STATE_NAMES: Final = ("CONNECTING", "OPEN", "CLOSED")


def reconnect_delay(
    reconnect: int, *, retry: float, max_retry: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before reconnection number ``reconnect`` (0-based) since the last event.

    The first waits exactly the reconnection time, as §9.2.3 says. Each further failure in a
    row may "wait some more" (the spec allows an exponential backoff): full jitter between
    the reconnection time and ``retry * 2**reconnect``, so clients that lost one server
    together do not return together. ``max_retry`` bounds every wait.
    """
    floor = min(retry, max_retry)
    if reconnect <= 0:
        return floor
    base = max(retry, _MIN_BACKOFF_BASE)
    ceiling = min(max_retry, base * 2.0 ** min(reconnect, _MAX_EXPONENT))
    return floor + rand() * max(0.0, ceiling - floor)


def _retryable_status(status: int) -> bool:
    return status in (408, 429) or (status >= 500 and status not in _PERMANENT_5XX)


def _is_event_stream(content_type: str | None) -> bool:
    # §9.2.3 compares the MIME type's essence, so parameters (";charset=utf-8") are allowed.
    return (content_type or "").split(";", 1)[0].strip().lower() == "text/event-stream"


class AsyncEventSource:
    """An iterator of ``ServerSentEvent`` that reconnects as a browser's EventSource does.

    ::

        async with AsyncEventSource(client, "/v1/events") as source:
            async for event in source:
                ...

    Every connection is a ``client.fetch``, so the client's pipes (auth, logging, its own
    retry) apply to each. ``body`` (bytes or str) or ``json`` is sent again on every
    reconnection; a streamed body cannot be, so it is refused. ``retry`` is the initial
    reconnection time in seconds (a ``retry:`` field from the server replaces it);
    ``max_retry`` bounds every wait; ``max_reconnects`` is how many reconnections in a row may
    pass without an event (``None``: no limit). The list in this module's docstring says
    what ends the stream. ``aclose()`` may be called from another task or thread: it
    interrupts a wait or a read in progress.
    """

    CONNECTING: Final = CONNECTING
    OPEN: Final = OPEN
    CLOSED: Final = CLOSED

    def __init__(
        self,
        client: AsyncClient,
        url: str,
        *,
        method: str = "GET",
        headers: HeadersInit | None = None,
        body: bytes | str | None = None,
        json: Any = UNSET,
        last_event_id: str | None = None,
        retry: float = 3.0,
        max_retry: float = 60.0,
        max_reconnects: int | None = 10,
        signal: AbortSignal | None = None,
        timeout: TimeoutInit = UNSET,
    ) -> None:
        if retry < 0 or max_retry < 0:
            raise ValueError("retry and max_retry must be zero or more seconds")
        if max_reconnects is not None and max_reconnects < 0:
            raise ValueError("max_reconnects must be zero or more, or None for no limit")
        self.url = url
        self.method = method.upper()
        self.max_retry = max_retry
        self.max_reconnects = max_reconnects
        self.reconnects = 0
        self._client = client
        self._timeout = timeout
        self._headers = Headers(headers)
        self._body = self._replayable_body(body, json)
        # §9.2.2, the EventSource constructor: Accept names the one type wanted, and the
        # request skips caches (cache mode "no-store"); Cache-Control: no-cache is how a
        # plain HTTP client asks any cache on the way not to answer for the server.
        self._headers.setdefault("Accept", "text/event-stream")
        self._headers.setdefault("Cache-Control", "no-cache")
        self._retry = retry
        self._delay = 0.0
        self._state: int = CONNECTING
        self._closed = False
        self._busy = False
        self._queue: deque[ServerSentEvent] = deque()
        self._decoder = SSEDecoder()
        self._last_event_id = ""
        if last_event_id:
            self._seed_last_event_id(last_event_id)
        self._response: AsyncResponse | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        # One signal for every request and wait: the caller's signal feeds it, and aclose()
        # fires it, which is what interrupts a read or a wait in another task or thread.
        self._stop = AbortController()
        self._signal = signal
        self._signal_handle: int | None = None
        if signal is not None:
            self._signal_handle = signal.add_listener(self._stop.abort)
            if signal.aborted:
                self._stop.abort(signal.reason)

    def _replayable_body(self, body: bytes | str | None, json: Any) -> bytes | None:
        data: bytes | None
        if json is not UNSET:
            if body is not None:
                raise TypeError("pass either body= or json=, not both")
            self._headers.setdefault("Content-Type", "application/json")
            data = msgspec.json.encode(json)
        elif isinstance(body, str):
            self._headers.setdefault("Content-Type", "text/plain;charset=UTF-8")
            data = body.encode()
        elif body is None or isinstance(body, bytes | bytearray | memoryview):
            data = None if body is None else bytes(body)
        else:
            raise TypeError(
                "an event source sends its body again on every reconnection, so it must be "
                f"bytes or str, not {type(body).__name__}"
            )
        if data is not None and self.method in ("GET", "HEAD"):
            raise TypeError(f"a {self.method} request cannot have a body; use method='POST'")
        return data

    def _seed_last_event_id(self, value: str) -> None:
        # A header value cannot hold CR or LF, and §9.2.6 ignores an id holding NUL.
        if any(c in value for c in "\x00\r\n"):
            raise ValueError("last_event_id cannot contain NUL, CR or LF")
        # Given to the decoder as the server would have sent it, in a block without data:
        # that sets the last event ID without dispatching (§9.2.6), and it carries over to
        # events without an id of their own, as it does after any reconnection.
        self._decoder.feed(b"id: " + value.encode() + b"\n\n")
        self._decoder.close()
        self._last_event_id = self._decoder.last_event_id

    # ------------------------------------------------------------------ public state

    @property
    def last_event_id(self) -> str:
        """The id in force for the last event handed out (HTML §9.2.2 ``lastEventId``)."""
        return self._last_event_id

    @property
    def retry(self) -> float:
        """The reconnection time in seconds: the initial ``retry``, or the server's last
        ``retry:`` field."""
        return self._retry

    @property
    def ready_state(self) -> int:
        """``CONNECTING`` (0), ``OPEN`` (1) or ``CLOSED`` (2), as §9.2.2 defines them."""
        return self._state

    # ------------------------------------------------------------------ iteration

    def __aiter__(self) -> AsyncEventSource:
        return self

    async def __anext__(self) -> ServerSentEvent:
        self._busy = True
        try:
            while not self._queue:
                if self._state == CLOSED:
                    await self._drop()
                    raise StopAsyncIteration
                try:
                    if self._response is None:
                        await self._connect()
                    else:
                        await self._pull()
                except Exception as exc:
                    await self._recover(exc)
            return self._pop()
        finally:
            self._busy = False

    async def _connect(self) -> None:
        delay, self._delay = self._delay, 0.0
        await sleep(delay, self._stop.signal)
        headers = self._headers.copy()
        # §9.2.4: the header goes only when the last event ID string is not empty.
        if self._decoder.last_event_id:
            headers.set("Last-Event-ID", self._decoder.last_event_id)
        response = await self._client.fetch(
            self.url,
            method=self.method,
            headers=headers,
            body=self._body,
            signal=self._stop.signal,
            timeout=self._timeout,
            throw_http_errors=True,
        )
        self._response = response
        if response.status == 204:
            # §9.2.3: 204 No Content is how a server tells the client to stop reconnecting.
            await self._drop()
            self._finish()
            return
        if not response.ok:
            # Only an unfollowed 3xx gets here (redirect="manual"); other statuses raised.
            await response.raise_for_status()
        content_type = response.headers.get("content-type")
        if not _is_event_stream(content_type):
            raise ContentTypeError(
                f"expected an event stream (text/event-stream) from {redact_url(response.url)}, "
                f"got {content_type or 'no Content-Type'!r}"
            )
        self._chunks = response.body
        self._state = OPEN

    async def _pull(self) -> None:
        assert self._chunks is not None
        chunk = await anext(self._chunks, b"")
        if not chunk:
            # The server ended the response: in the SSE model that is a cue to reconnect.
            await self._drop()
            self._schedule(None, None)
            return
        events = self._decoder.feed(chunk)
        if self._decoder.retry is not None:
            self._retry = self._decoder.retry / 1000
        if events:
            self._queue.extend(events)
            self.reconnects = 0
        else:
            self._last_event_id = self._decoder.last_event_id

    def _pop(self) -> ServerSentEvent:
        event = self._queue.popleft()
        # With more events queued, the decoder's id may already be a later event's.
        self._last_event_id = event.id if self._queue else self._decoder.last_event_id
        return event

    # ------------------------------------------------------------------ failures

    async def _recover(self, exc: Exception) -> None:
        """Reconnect after ``exc`` if the SSE model says to, else fail with it."""
        await self._drop()
        if self._closed:
            return  # aclose() interrupted this step; the loop ends the iteration
        if self._stop.signal.aborted:
            # Whatever broke meanwhile, the caller asked to stop: raise the signal's error.
            self._fail(exc if isinstance(exc, AbortError) else self._stop.signal.error())
        if isinstance(exc, HTTPError):
            if not _retryable_status(exc.status):
                self._fail(exc)
            self._schedule(exc, exc.retry_after)
        elif isinstance(exc, NetworkError | TimeoutError):
            self._schedule(exc, None)
        else:
            # ContentTypeError, SSEError, a bug: waiting would not change them.
            self._fail(exc)

    def _schedule(self, error: Exception | None, server_wait: float | None) -> None:
        """Arrange the next reconnection, or fail once ``max_reconnects`` have gone by."""
        if self.max_reconnects is not None and self.reconnects >= self.max_reconnects:
            self._fail(error or self._ended_error())
        if server_wait is not None and server_wait > self.max_retry and error is not None:
            self._fail(error)
        delay = reconnect_delay(self.reconnects, retry=self._retry, max_retry=self.max_retry)
        if server_wait is not None:
            # The server's wait is used as given (no jitter), but never below the
            # reconnection time, which §9.2.3 makes the least wait before reconnecting.
            delay = max(server_wait, min(self._retry, self.max_retry))
        self._delay = delay
        self.reconnects += 1
        self._state = CONNECTING

    def _ended_error(self) -> NetworkError:
        return NetworkError(
            f"the event stream from {redact_url(self.url)} ended without an event "
            f"{self.reconnects + 1} times in a row (max_reconnects={self.max_reconnects})",
            phase="body",
        )

    def _fail(self, exc: BaseException) -> NoReturn:
        self._finish()
        raise exc

    def _finish(self) -> None:
        self._state = CLOSED
        if self._signal is not None:
            self._signal.remove_listener(self._signal_handle)
            self._signal_handle = None

    async def _drop(self) -> None:
        """Close the current response, if any; its unfinished event is discarded (§9.2.6)."""
        response, chunks = self._response, self._chunks
        self._response = self._chunks = None
        if response is None:
            return
        self._decoder.close()
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
        await response.aclose()

    # ------------------------------------------------------------------ closing

    async def aclose(self) -> None:
        """Stop for good: close the connection; a later or pending step ends iteration."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._finish()
        self._stop.abort("the event source was closed")
        if not self._busy:
            await self._drop()

    async def __aenter__(self) -> AsyncEventSource:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {_STATE_NAMES[self._state]} {redact_url(self.url)}>"
