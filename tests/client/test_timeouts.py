"""Timeouts by phase: connect, first_byte, idle and total; each names its phase.

Limits here are short (0.3 s) and the bounds on how long a failure may take are generous:
they only catch a timeout that does not fire.
"""

from __future__ import annotations

import builtins
from typing import Any

import pytest

import aifetch
from tests.client.conftest import GUARD, Blackhole, HeadThenStall, within
from tests.support.fake_upstream import (
    FakeUpstream,
    endless_stream,
    respond,
    slow_first_byte,
    stall,
    trickle,
)

SHORT = 0.3


def _assert_phase(err: BaseException, phase: str) -> None:
    assert isinstance(err, aifetch.TimeoutError)
    assert isinstance(err, builtins.TimeoutError)  # `except TimeoutError` catches it too
    assert err.phase == phase, str(err)


def test_connect_timeout(client: Any, blackhole: Blackhole) -> None:
    with within(3.0), pytest.raises(aifetch.TimeoutError) as info:
        client.get(f"{blackhole.url}/x", timeout=aifetch.Timeout(connect=SHORT))
    _assert_phase(info.value, "connect")
    assert f"{SHORT:g} s" in str(info.value)


def test_first_byte_timeout(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(slow_first_byte(GUARD, respond(200, b"late")))
    with within(3.0), pytest.raises(aifetch.TimeoutError) as info:
        client.get(f"{upstream.url}/x", timeout=aifetch.Timeout(first_byte=SHORT))
    _assert_phase(info.value, "first_byte")
    # The connection is given up, not left waiting for the late answer.
    assert upstream.wait_for_close(upstream.requests[0].connection_id, GUARD) is not None


def test_idle_timeout_on_a_stalled_stream(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(stall(after_events=1))
    resp = client.post(
        f"{upstream.url}/v1/chat/completions", json={}, timeout=aifetch.Timeout(idle=SHORT)
    )
    chunks = iter(resp.body)
    assert next(chunks).startswith(b"data: ")
    with within(3.0), pytest.raises(aifetch.TimeoutError) as info:
        next(chunks)
    _assert_phase(info.value, "idle")
    assert upstream.wait_for_close(upstream.requests[0].connection_id, GUARD) is not None


def test_idle_is_the_gap_between_reads_not_the_whole_body(
    client: Any, upstream: FakeUpstream
) -> None:
    body = b"x" * 40
    upstream.enqueue(trickle(body, delay_per_byte=0.02, content_type="text/plain"))
    resp = client.get(f"{upstream.url}/x", timeout=aifetch.Timeout(idle=SHORT))
    assert resp.bytes() == body  # 0.8 s in all, never 0.3 s without a byte


def test_total_timeout_while_reading_the_body(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(endless_stream(interval=0.02))
    resp = client.post(
        f"{upstream.url}/v1/chat/completions",
        json={},
        timeout=aifetch.Timeout(idle=None, total=0.5),
    )
    with within(3.0), pytest.raises(aifetch.TimeoutError) as info:
        for _ in resp.body:
            pass
    _assert_phase(info.value, "total")


def test_total_timeout_before_the_headers(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(slow_first_byte(GUARD, respond(200, b"late")))
    with within(3.0), pytest.raises(aifetch.TimeoutError) as info:
        client.get(f"{upstream.url}/x", timeout=aifetch.Timeout(first_byte=None, total=SHORT))
    _assert_phase(info.value, "total")


def test_total_as_a_client_option(make_client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(slow_first_byte(GUARD, respond(200, b"late")))
    client = make_client(timeout=aifetch.Timeout(total=SHORT))
    with within(3.0), pytest.raises(aifetch.TimeoutError) as info:
        client.get(f"{upstream.url}/x")
    _assert_phase(info.value, "total")


def test_a_bare_number_limits_every_phase_but_total(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(slow_first_byte(GUARD, respond(200, b"late")))
    with within(3.0), pytest.raises(aifetch.TimeoutError) as info:
        client.get(f"{upstream.url}/x", timeout=SHORT)
    _assert_phase(info.value, "first_byte")
    upstream.enqueue(HeadThenStall())
    resp = client.get(f"{upstream.url}/y", timeout=SHORT)
    with within(3.0), pytest.raises(aifetch.TimeoutError) as info:
        resp.bytes()
    _assert_phase(info.value, "idle")


def test_timeout_pipe(make_client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(slow_first_byte(GUARD, respond(200, b"late")))
    client = make_client(pipes=[aifetch.pipes.timeout(aifetch.Timeout(first_byte=SHORT))])
    with within(3.0), pytest.raises(aifetch.TimeoutError) as info:
        client.get(f"{upstream.url}/x")
    _assert_phase(info.value, "first_byte")


def test_none_means_no_limit(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(slow_first_byte(0.4, respond(200, b"late but fine")))
    resp = client.get(f"{upstream.url}/x", timeout=None)
    assert resp.text() == "late but fine"


def test_timeout_values_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        aifetch.Timeout(connect=0)
    with pytest.raises(ValueError, match="positive"):
        aifetch.Timeout(total=-1)
