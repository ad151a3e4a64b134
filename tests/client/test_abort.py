"""AbortController: before sending, while waiting for headers, mid-body; from another task
(async client) or another thread (both clients). An abort closes the connection."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import aifetch
from tests.client.conftest import GUARD, AbortCase, Blackhole, HeadThenStall, within
from tests.support.fake_upstream import FakeUpstream, respond, slow_first_byte, status_storm


class Reason:
    """A reason of the caller's own type: it must come back as given."""


def test_abort_before_sending(abort_case: AbortCase, upstream: FakeUpstream) -> None:
    ctrl = aifetch.AbortController()
    reason = Reason()
    ctrl.abort(reason)
    with pytest.raises(aifetch.AbortError) as info:
        abort_case.client.get(f"{upstream.url}/echo", signal=ctrl.signal)
    assert info.value.reason is reason
    assert upstream.requests == []
    assert ctrl.signal.aborted is True
    assert ctrl.signal.reason is reason


def test_abort_while_waiting_for_headers(abort_case: AbortCase, upstream: FakeUpstream) -> None:
    upstream.enqueue(slow_first_byte(GUARD, respond(200, b"late")))
    ctrl = aifetch.AbortController()
    abort_case.aborter.abort_when(ctrl, lambda: upstream.wait_for_requests(1), "user left")
    with within(3.0), pytest.raises(aifetch.AbortError) as info:
        abort_case.client.get(f"{upstream.url}/x", signal=ctrl.signal)
    assert info.value.reason == "user left"
    assert abort_case.aborter.fired_on
    assert upstream.wait_for_close(upstream.requests[0].connection_id, GUARD) is not None


def test_abort_mid_body(abort_case: AbortCase, upstream: FakeUpstream) -> None:
    upstream.enqueue(HeadThenStall(b"first"))
    ctrl = aifetch.AbortController()
    got_first = threading.Event()
    resp = abort_case.client.get(f"{upstream.url}/x", signal=ctrl.signal)
    chunks = iter(resp.body)
    assert next(chunks) == b"first"
    abort_case.aborter.abort_when(ctrl, lambda: got_first.wait(GUARD), "enough")
    got_first.set()
    # The next read is waiting on a silent server when (or before) the abort lands.
    with within(3.0), pytest.raises(aifetch.AbortError) as info:
        next(chunks)
    assert info.value.reason == "enough"
    assert upstream.wait_for_close(upstream.requests[0].connection_id, GUARD) is not None


def test_abort_during_a_retry_wait(abort_case: AbortCase, upstream: FakeUpstream) -> None:
    upstream.enqueue(status_storm(503, retry_after="30"))
    ctrl = aifetch.AbortController()
    abort_case.aborter.abort_when(ctrl, lambda: upstream.wait_for_requests(1), "stop waiting")
    with within(3.0), pytest.raises(aifetch.AbortError):
        abort_case.client.get(
            f"{upstream.url}/echo", signal=ctrl.signal, pipes=[aifetch.pipes.retry(attempts=3)]
        )
    assert len(upstream.requests) == 1


def test_abort_after_the_body_was_read_changes_nothing(
    abort_case: AbortCase, upstream: FakeUpstream
) -> None:
    ctrl = aifetch.AbortController()
    resp = abort_case.client.get(f"{upstream.url}/echo", signal=ctrl.signal)
    data = resp.json()
    ctrl.abort()
    assert data["path"] == "/echo"
    assert resp.status == 200


def test_signal_timeout_before_headers(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(slow_first_byte(GUARD, respond(200, b"late")))
    with within(3.0), pytest.raises(aifetch.TimeoutError) as info:
        client.get(f"{upstream.url}/x", signal=aifetch.AbortSignal.timeout(0.3))
    # AbortSignal.timeout aborts with a TimeoutError reason, as the DOM's does.
    assert isinstance(info.value, TimeoutError)


def test_signal_timeout_mid_body(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(HeadThenStall(b"first"))
    resp = client.get(f"{upstream.url}/x", signal=aifetch.AbortSignal.timeout(0.3))
    chunks = iter(resp.body)
    assert next(chunks) == b"first"
    with within(3.0), pytest.raises(aifetch.TimeoutError):
        next(chunks)
    assert upstream.wait_for_close(upstream.requests[0].connection_id, GUARD) is not None


def test_signal_any() -> None:
    a, b = aifetch.AbortController(), aifetch.AbortController()
    combined = aifetch.AbortSignal.any([a.signal, b.signal])
    assert combined.aborted is False
    b.abort("b went")
    assert combined.aborted is True
    assert combined.reason == "b went"
    with pytest.raises(aifetch.AbortError):
        combined.throw_if_aborted()


def test_abort_while_connecting(abort_case: AbortCase, blackhole: Blackhole) -> None:
    ctrl = aifetch.AbortController()
    # Nothing observable marks "connecting" on a listener that accepts nothing, so the
    # abort comes after a short pause; earlier or later, it must end the wait all the same.
    pause = threading.Event()
    abort_case.aborter.abort_when(ctrl, lambda: pause.wait(0.2), "gave up connecting")
    with within(3.0), pytest.raises(aifetch.AbortError) as info:
        abort_case.client.get(
            f"{blackhole.url}/x", signal=ctrl.signal, timeout=aifetch.Timeout(connect=None)
        )
    assert info.value.reason == "gave up connecting"


def test_signal_timeout_while_connecting(client: Any, blackhole: Blackhole) -> None:
    with within(3.0), pytest.raises(aifetch.TimeoutError):
        client.get(
            f"{blackhole.url}/x",
            signal=aifetch.AbortSignal.timeout(0.3),
            timeout=aifetch.Timeout(connect=None),
        )
