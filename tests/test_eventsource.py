"""The reconnecting event source (HTML §9.2.3-§9.2.4), async and sync, on a loopback server.

Each network test has one body, run for both flavours: ``Flavour.collect`` drives an
``AsyncEventSource`` on the test's loop, or an ``EventSource`` in a worker thread. Every
source gets an ``AbortSignal.timeout`` as a hang-catcher unless the test brings a signal.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from aifetch import (
    AbortController,
    AbortError,
    AbortSignal,
    AsyncClient,
    Client,
    ContentTypeError,
    InternalServerError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    Timeout,
)
from aifetch._async._eventsource import CLOSED, CONNECTING, OPEN, AsyncEventSource, reconnect_delay
from aifetch._sync._eventsource import EventSource
from aifetch.sse import ServerSentEvent
from tests.support.fake_upstream import Exchange, FakeUpstream, respond, status_storm

HANG = 5.0  # seconds: only ever reached when something hangs
PATH = "/events"
ALWAYS = "/always"  # not routed by the fixture: a test routes it to answer every request


# --------------------------------------------------------------------------- server side


@dataclass(frozen=True)
class Stream:
    """A ``text/event-stream`` response of ``pieces``, then ``end``: finish the chunked body,
    reset the connection, or hold it open until the client goes away."""

    pieces: tuple[bytes, ...] = ()
    end: Literal["finish", "reset", "hold"] = "finish"
    content_type: str = "text/event-stream"

    async def run(self, ex: Exchange) -> None:
        await ex.start_stream(200, None, self.content_type)
        await ex.send_chunks(*self.pieces)
        if self.end == "finish":
            await ex.end_stream()
        elif self.end == "reset":
            ex.reset()
        else:
            await ex.wait_peer_gone()


def stream(*pieces: bytes, end: Literal["finish", "reset", "hold"] = "finish") -> Stream:
    return Stream(pieces, end)


NO_CONTENT = respond(204)


@pytest.fixture
def up() -> Any:
    with FakeUpstream() as server:
        # Whatever a test did not queue is answered 204, which ends any source for good.
        server.route("GET", PATH, NO_CONTENT)
        server.route("POST", PATH, NO_CONTENT)
        yield server


# --------------------------------------------------------------------------- client side


@dataclass
class Run:
    events: list[ServerSentEvent] = field(default_factory=list)
    states: list[int] = field(default_factory=list)  # ready_state at each event
    last_ids: list[str] = field(default_factory=list)  # last_event_id at each event
    source: Any = None


OnEvent = Callable[[Any, ServerSentEvent], None]


class Flavour:
    """Runs one event source to its end, in the flavour's own way."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def collect(
        self,
        url: str,
        *,
        limit: int | None = None,
        on_event: OnEvent | None = None,
        client_timeout: Timeout | None = None,
        run: Run | None = None,
        **options: Any,
    ) -> Run:
        """Iterate to the end; ``run`` (made here if not given) fills in as it goes."""
        options.setdefault("signal", AbortSignal.timeout(HANG))
        options.setdefault("retry", 0.01)
        run = run or Run()
        if self.name == "async":
            await self._collect_async(run, url, limit, on_event, client_timeout, options)
        else:
            await asyncio.to_thread(
                self._collect_sync, run, url, limit, on_event, client_timeout, options
            )
        return run

    async def _collect_async(
        self,
        run: Run,
        url: str,
        limit: int | None,
        on_event: OnEvent | None,
        client_timeout: Timeout | None,
        options: dict[str, Any],
    ) -> None:
        async with AsyncClient(timeout=client_timeout or Timeout()) as client:
            source = run.source = AsyncEventSource(client, url, **options)
            async with source:
                async for event in source:
                    run.events.append(event)
                    run.states.append(source.ready_state)
                    run.last_ids.append(source.last_event_id)
                    if on_event is not None:
                        on_event(source, event)
                    if limit is not None and len(run.events) >= limit:
                        break

    def _collect_sync(
        self,
        run: Run,
        url: str,
        limit: int | None,
        on_event: OnEvent | None,
        client_timeout: Timeout | None,
        options: dict[str, Any],
    ) -> None:
        with Client(timeout=client_timeout or Timeout()) as client:
            source = run.source = EventSource(client, url, **options)
            with source:
                for event in source:
                    run.events.append(event)
                    run.states.append(source.ready_state)
                    run.last_ids.append(source.last_event_id)
                    if on_event is not None:
                        on_event(source, event)
                    if limit is not None and len(run.events) >= limit:
                        break

    async def close(self, source: Any) -> None:
        """Close ``source`` from the test's task: another task, or another thread."""
        if self.name == "async":
            await source.aclose()
        else:
            source.close()

    def close_later(self, source: Any, delay: float) -> None:
        """Close ``source`` from outside its iteration: another task, or another thread."""
        if self.name == "async":
            loop = asyncio.get_running_loop()
            tasks: set[asyncio.Task[None]] = set()

            def start() -> None:
                task = loop.create_task(source.aclose())
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            loop.call_later(delay, start)
        else:
            timer = threading.Timer(delay, source.close)
            timer.daemon = True
            timer.start()


@pytest.fixture(params=["async", "sync"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return Flavour(request.param)


async def waiting_to_reconnect(run: Run) -> None:
    """Until ``run``'s source had an event and is waiting to reconnect.

    After a stream's end the source marks itself CONNECTING and goes straight into its wait
    (no I/O in between), so once this is seen, the wait is what an abort or close meets.
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + HANG
    while not (run.events and run.source.ready_state == CONNECTING):
        assert loop.time() < give_up, "the source never started waiting to reconnect"
        await asyncio.sleep(0.002)


def data(run: Run) -> list[str]:
    return [event.data for event in run.events]


def url_of(up: FakeUpstream, path: str = PATH) -> str:
    return up.url + path


# --------------------------------------------------------------------------- reconnecting


async def test_reconnects_after_a_clean_end_sending_last_event_id(
    up: FakeUpstream, flavour: Flavour
) -> None:
    up.enqueue(stream(b"id: 1\ndata: a\n\n"), path=PATH)
    up.enqueue(stream(b"data: b\n\n"), path=PATH)
    run = await flavour.collect(url_of(up))
    assert data(run) == ["a", "b"]
    # The id carries over to an event of the next connection that has none (§9.2.6).
    assert [e.id for e in run.events] == ["1", "1"]
    first, second, third = up.requests
    assert first.header("last-event-id") is None
    assert second.header("last-event-id") == "1"
    assert third.header("last-event-id") == "1"
    for request in up.requests:
        assert request.header("accept") == "text/event-stream"
        assert request.header("cache-control") == "no-cache"
    assert run.states == [OPEN, OPEN]
    assert run.source.ready_state == CLOSED
    assert run.source.last_event_id == "1"


async def test_a_broken_connection_drops_the_unfinished_event_and_resumes(
    up: FakeUpstream, flavour: Flavour
) -> None:
    up.enqueue(stream(b"id: 1\ndata: a\n\nid: 2\ndata: cut", end="reset"), path=PATH)
    up.enqueue(stream(b"id: 3\ndata: b\n\n"), path=PATH)
    run = await flavour.collect(url_of(up))
    assert data(run) == ["a", "b"]
    # The unfinished block's id never took effect, so the resume point is 1, not 2.
    assert up.requests[1].header("last-event-id") == "1"
    assert up.requests[2].header("last-event-id") == "3"


async def test_an_idle_timeout_reconnects(up: FakeUpstream, flavour: Flavour) -> None:
    up.enqueue(stream(b"id: 7\ndata: a\n\n", end="hold"), path=PATH)
    up.enqueue(stream(b"data: b\n\n"), path=PATH)
    run = await flavour.collect(url_of(up), client_timeout=Timeout(idle=0.1))
    assert data(run) == ["a", "b"]
    assert up.requests[1].header("last-event-id") == "7"


async def test_the_given_last_event_id_is_sent_and_carried(
    up: FakeUpstream, flavour: Flavour
) -> None:
    up.enqueue(stream(b"data: a\n\n"), path=PATH)
    run = await flavour.collect(url_of(up), last_event_id="42")
    assert up.requests[0].header("last-event-id") == "42"
    assert run.events == [ServerSentEvent("message", "a", "42", None)]


async def test_last_event_id_follows_the_events_handed_out(
    up: FakeUpstream, flavour: Flavour
) -> None:
    # One read holds three events and an id-only block; the attribute must not run ahead.
    up.enqueue(stream(b"id: 1\ndata: a\n\nid: 2\ndata: b\n\ndata: c\n\nid: 9\n\n"), path=PATH)
    up.enqueue(stream(b"data: d\n\n"), path=PATH)
    run = await flavour.collect(url_of(up))
    assert run.last_ids == ["1", "2", "9", "9"]
    assert [e.id for e in run.events] == ["1", "2", "2", "9"]
    assert up.requests[1].header("last-event-id") == "9"


async def test_an_empty_id_field_stops_sending_last_event_id(
    up: FakeUpstream, flavour: Flavour
) -> None:
    up.enqueue(stream(b"id: 1\ndata: a\n\nid\ndata: b\n\n"), path=PATH)
    run = await flavour.collect(url_of(up))
    assert [e.id for e in run.events] == ["1", ""]
    # §9.2.4: an empty last event ID string is not sent at all.
    assert up.requests[1].header("last-event-id") is None


async def test_the_servers_retry_field_sets_the_reconnection_time(
    up: FakeUpstream, flavour: Flavour
) -> None:
    # The initial reconnection time would outlast the hang-catcher; the server's 20 ms
    # must replace it for this test to pass at all.
    up.enqueue(stream(b"retry: 20\ndata: a\n\n"), path=PATH)
    up.enqueue(stream(b"data: b\n\n"), path=PATH)
    run = await flavour.collect(url_of(up), retry=30.0)
    assert data(run) == ["a", "b"]
    assert run.source.retry == pytest.approx(0.02)
    gap = up.requests[1].received_at - up.requests[0].received_at
    assert 0.02 <= gap < HANG


async def test_a_retry_field_without_data_still_counts(up: FakeUpstream, flavour: Flavour) -> None:
    up.enqueue(stream(b"data: a\n\n", b"retry: 15\n\n"), path=PATH)
    up.enqueue(stream(b"data: b\n\n"), path=PATH)
    run = await flavour.collect(url_of(up), retry=30.0)
    assert data(run) == ["a", "b"]
    assert run.source.retry == pytest.approx(0.015)


async def test_post_body_is_sent_again_on_every_reconnection(
    up: FakeUpstream, flavour: Flavour
) -> None:
    up.enqueue(stream(b"id: x\ndata: a\n\n"), path=PATH)
    up.enqueue(stream(b"data: b\n\n"), path=PATH)
    run = await flavour.collect(url_of(up), method="POST", json={"model": "m", "n": 1})
    assert data(run) == ["a", "b"]
    assert len(up.requests) == 3
    for request in up.requests:
        assert request.method == "POST"
        assert request.json() == {"model": "m", "n": 1}
        assert request.header("content-type") == "application/json"
    assert up.requests[1].header("last-event-id") == "x"


async def test_attempts_reset_once_an_event_arrives(up: FakeUpstream, flavour: Flavour) -> None:
    # Two failed reconnections, then an event; then the reconnection after that stream's
    # end and one more failure. Without the reset that would be four in a row.
    failure = status_storm(503)
    up.enqueue(failure, path=PATH, times=2)
    up.enqueue(stream(b"data: a\n\n"), path=PATH)
    up.enqueue(failure, path=PATH)
    up.enqueue(stream(b"data: b\n\n"), path=PATH)
    run = await flavour.collect(url_of(up), max_reconnects=2, max_retry=0.05)
    assert data(run) == ["a", "b"]
    assert len(up.requests) == 6


# --------------------------------------------------------------------------- statuses


async def test_204_ends_iteration_without_an_error(up: FakeUpstream, flavour: Flavour) -> None:
    run = await flavour.collect(url_of(up))
    assert run.events == []
    assert len(up.requests) == 1
    assert run.source.ready_state == CLOSED


async def test_404_raises_not_found_and_does_not_reconnect(
    up: FakeUpstream, flavour: Flavour
) -> None:
    up.enqueue(respond(404, {"error": {"message": "no such stream"}}), path=PATH)
    with pytest.raises(NotFoundError, match="no such stream"):
        await flavour.collect(url_of(up))
    assert len(up.requests) == 1


@pytest.mark.parametrize(
    ("status", "retry_after"), [(503, "0.2"), (429, "0.2"), (408, None), (502, None)]
)
async def test_retryable_statuses_reconnect_after_retry_after(
    up: FakeUpstream, flavour: Flavour, status: int, retry_after: str | None
) -> None:
    up.enqueue(status_storm(status, retry_after=retry_after), path=PATH)
    up.enqueue(stream(b"data: a\n\n"), path=PATH)
    run = await flavour.collect(url_of(up))
    assert data(run) == ["a"]
    gap = up.requests[1].received_at - up.requests[0].received_at
    if retry_after is not None:
        assert gap >= float(retry_after)
    assert gap < HANG


async def test_a_retry_after_beyond_max_retry_raises(up: FakeUpstream, flavour: Flavour) -> None:
    up.enqueue(status_storm(429, retry_after="120"), path=PATH)
    with pytest.raises(RateLimitError) as info:
        await flavour.collect(url_of(up), max_retry=10.0)
    assert info.value.retry_after == 120
    assert len(up.requests) == 1


async def test_501_is_not_retried(up: FakeUpstream, flavour: Flavour) -> None:
    up.enqueue(status_storm(501), path=PATH)
    with pytest.raises(InternalServerError):
        await flavour.collect(url_of(up))
    assert len(up.requests) == 1


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", ""])
async def test_a_wrong_content_type_raises(
    up: FakeUpstream, flavour: Flavour, content_type: str
) -> None:
    up.enqueue(Stream((b"data: a\n\n",), "finish", content_type), path=PATH)
    with pytest.raises(ContentTypeError):
        await flavour.collect(url_of(up))
    assert len(up.requests) == 1


async def test_content_type_parameters_are_accepted(up: FakeUpstream, flavour: Flavour) -> None:
    up.enqueue(Stream((b"data: a\n\n",), "finish", "Text/Event-Stream; charset=utf-8"), path=PATH)
    run = await flavour.collect(url_of(up))
    assert data(run) == ["a"]


# --------------------------------------------------------------------------- giving up


async def test_max_reconnects_raises_the_last_error(up: FakeUpstream, flavour: Flavour) -> None:
    up.route("GET", ALWAYS, status_storm(503))
    with pytest.raises(InternalServerError):
        await flavour.collect(url_of(up, ALWAYS), max_reconnects=2, max_retry=0.05)
    # The first connection and two reconnections.
    assert len(up.requests) == 3


async def test_max_reconnects_after_streams_that_end_empty(
    up: FakeUpstream, flavour: Flavour
) -> None:
    up.route("GET", ALWAYS, stream(b": only a comment\n\n"))
    with pytest.raises(NetworkError, match="ended without an event 3 times"):
        await flavour.collect(url_of(up, ALWAYS), max_reconnects=2, max_retry=0.05)
    assert len(up.requests) == 3


async def test_max_reconnects_after_connection_resets(up: FakeUpstream, flavour: Flavour) -> None:
    up.route("GET", ALWAYS, stream(end="reset"))
    with pytest.raises(NetworkError):
        await flavour.collect(url_of(up, ALWAYS), max_reconnects=1, max_retry=0.05)
    assert len(up.requests) == 2


async def test_max_reconnects_zero_never_reconnects(up: FakeUpstream, flavour: Flavour) -> None:
    up.enqueue(status_storm(503), path=PATH)
    with pytest.raises(InternalServerError):
        await flavour.collect(url_of(up), max_reconnects=0)
    assert len(up.requests) == 1


# --------------------------------------------------------------------------- stopping


async def test_abort_during_the_wait_between_attempts(up: FakeUpstream, flavour: Flavour) -> None:
    up.route("GET", ALWAYS, stream(b"data: a\n\n"))
    controller = AbortController()
    run = Run()
    task = asyncio.ensure_future(
        flavour.collect(url_of(up, ALWAYS), retry=30.0, signal=controller.signal, run=run)
    )
    await waiting_to_reconnect(run)
    controller.abort("user left")
    with pytest.raises(AbortError) as info:
        await asyncio.wait_for(task, HANG)
    assert info.value.reason == "user left"
    assert len(up.requests) == 1


async def test_abort_during_a_read(up: FakeUpstream, flavour: Flavour) -> None:
    up.enqueue(stream(b"data: a\n\n", end="hold"), path=PATH)
    controller = AbortController()

    def abort_soon(_source: Any, _event: ServerSentEvent) -> None:
        timer = threading.Timer(0.05, controller.abort, ("enough",))
        timer.daemon = True
        timer.start()

    with pytest.raises(AbortError) as info:
        await flavour.collect(url_of(up), signal=controller.signal, on_event=abort_soon)
    assert info.value.reason == "enough"
    assert len(up.requests) == 1
    closed = await up.wait_for_close_async(up.requests[0].connection_id, timeout=HANG)
    assert closed is not None


async def test_a_signal_timeout_raises_its_timeout_error(
    up: FakeUpstream, flavour: Flavour
) -> None:
    up.enqueue(stream(b"data: a\n\n", end="hold"), path=PATH)
    with pytest.raises(TimeoutError) as info:
        await flavour.collect(url_of(up), signal=AbortSignal.timeout(0.1))
    assert getattr(info.value, "phase", None) == "total"
    assert len(up.requests) == 1


async def test_an_aborted_signal_sends_nothing(up: FakeUpstream, flavour: Flavour) -> None:
    controller = AbortController()
    controller.abort()
    with pytest.raises(AbortError):
        await flavour.collect(url_of(up), signal=controller.signal)
    assert up.requests == []


async def test_close_from_outside_during_a_read_ends_iteration(
    up: FakeUpstream, flavour: Flavour
) -> None:
    up.enqueue(stream(b"data: a\n\n", end="hold"), path=PATH)

    def close_soon(source: Any, _event: ServerSentEvent) -> None:
        flavour.close_later(source, 0.05)

    run = await flavour.collect(url_of(up), on_event=close_soon)
    assert data(run) == ["a"]
    assert run.source.ready_state == CLOSED
    assert len(up.requests) == 1
    closed = await up.wait_for_close_async(up.requests[0].connection_id, timeout=HANG)
    assert closed is not None


async def test_close_from_outside_during_the_wait_ends_iteration(
    up: FakeUpstream, flavour: Flavour
) -> None:
    up.route("GET", ALWAYS, stream(b"data: a\n\n"))
    run = Run()
    task = asyncio.ensure_future(flavour.collect(url_of(up, ALWAYS), retry=30.0, run=run))
    await waiting_to_reconnect(run)
    await flavour.close(run.source)
    await asyncio.wait_for(task, HANG)
    assert data(run) == ["a"]
    assert run.source.ready_state == CLOSED
    assert len(up.requests) == 1


async def test_breaking_out_closes_the_connection(up: FakeUpstream, flavour: Flavour) -> None:
    up.enqueue(stream(b"data: a\n\ndata: b\n\n", end="hold"), path=PATH)
    run = await flavour.collect(url_of(up), limit=1)
    assert data(run) == ["a"]
    assert run.source.ready_state == CLOSED
    closed = await up.wait_for_close_async(up.requests[0].connection_id, timeout=HANG)
    assert closed is not None


async def test_a_closed_source_yields_nothing_more(up: FakeUpstream) -> None:
    up.enqueue(stream(b"data: a\n\ndata: b\n\n"), path=PATH)
    async with AsyncClient() as client:
        source = AsyncEventSource(client, url_of(up), retry=0.01)
        assert source.ready_state == CONNECTING
        first = await anext(source)
        await source.aclose()
        await source.aclose()  # idempotent
        rest = [event async for event in source]
    assert first.data == "a"
    assert rest == []


# --------------------------------------------------------------------------- pure parts


def test_the_first_reconnection_waits_exactly_the_reconnection_time() -> None:
    assert reconnect_delay(0, retry=3.0, max_retry=60.0, rand=lambda: 0.99) == 3.0
    assert reconnect_delay(0, retry=90.0, max_retry=60.0, rand=lambda: 0.5) == 60.0


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 10, 100])
def test_backoff_has_full_jitter_between_retry_and_the_exponential_ceiling(attempt: int) -> None:
    low = reconnect_delay(attempt, retry=1.0, max_retry=60.0, rand=lambda: 0.0)
    high = reconnect_delay(attempt, retry=1.0, max_retry=60.0, rand=lambda: 1.0)
    assert low == 1.0
    assert high == min(60.0, 2.0**attempt)


def test_backoff_grows_even_from_a_zero_reconnection_time() -> None:
    assert reconnect_delay(0, retry=0.0, max_retry=60.0, rand=lambda: 1.0) == 0.0
    assert reconnect_delay(4, retry=0.0, max_retry=60.0, rand=lambda: 1.0) > 0.1


@pytest.mark.parametrize("cls", [AsyncEventSource, EventSource])
def test_arguments_are_checked_up_front(cls: Any) -> None:
    client = object()
    with pytest.raises(TypeError, match="bytes or str"):
        cls(client, "http://127.0.0.1/", method="POST", body=iter([b"x"]))
    with pytest.raises(TypeError, match="POST"):
        cls(client, "http://127.0.0.1/", json={"a": 1})
    with pytest.raises(TypeError, match="either"):
        cls(client, "http://127.0.0.1/", method="POST", body=b"x", json={})
    with pytest.raises(ValueError, match="last_event_id"):
        cls(client, "http://127.0.0.1/", last_event_id="a\nb")
    with pytest.raises(ValueError, match="max_reconnects"):
        cls(client, "http://127.0.0.1/", max_reconnects=-1)
    with pytest.raises(ValueError, match="retry"):
        cls(client, "http://127.0.0.1/", retry=-1)


def test_the_repr_names_the_state_and_hides_secrets() -> None:
    source = AsyncEventSource(object(), "http://127.0.0.1/e?api_key=sk-secret")  # type: ignore[arg-type]
    text = repr(source)
    assert "CONNECTING" in text
    assert "sk-secret" not in text


def test_ready_state_values_are_the_specs() -> None:
    assert (CONNECTING, OPEN, CLOSED) == (0, 1, 2)
    for cls in (AsyncEventSource, EventSource):
        assert (cls.CONNECTING, cls.OPEN, cls.CLOSED) == (0, 1, 2)
