"""The retry pipe: which failures, how long it waits, and where it stops."""

from __future__ import annotations

import itertools
import threading
import time
from email.utils import formatdate
from typing import Any

import pytest

import aifetch
from tests.client.conftest import Send, Truncated, portable, within
from tests.support.fake_upstream import (
    FakeUpstream,
    reset_before_headers,
    respond,
    slow_first_byte,
    status_storm,
)

FAST = {"backoff": 0.01, "cap": 0.05}


def _retrying(make_client: Any, **options: Any) -> Any:
    return make_client(pipes=[aifetch.pipes.retry(**{**FAST, **options})])


def _gaps(upstream: FakeUpstream) -> list[float]:
    times = [r.received_at for r in upstream.requests]
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_default_statuses_are_retried(
    make_client: Any, upstream: FakeUpstream, status: int
) -> None:
    upstream.enqueue(status_storm(status), times=2)
    resp = _retrying(make_client, attempts=3).get(f"{upstream.url}/echo")
    assert resp.status == 200
    assert resp.retries_taken == 2
    assert len(upstream.requests) == 3
    resp.close()


def test_gives_up_after_the_attempts(make_client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(status_storm(503), times=5)
    with pytest.raises(aifetch.InternalServerError) as info:
        _retrying(make_client, attempts=3).post(f"{upstream.url}/echo", json={})
    assert len(upstream.requests) == 3
    assert info.value.response.retries_taken == 2


@pytest.mark.parametrize("status", [400, 401, 404, 501])
def test_other_statuses_are_not_retried(
    make_client: Any, upstream: FakeUpstream, status: int
) -> None:
    upstream.enqueue(respond(status, b""), times=3)
    resp = _retrying(make_client).get(f"{upstream.url}/x", throw_http_errors=False)
    assert resp.status == status
    assert resp.retries_taken == 0
    assert len(upstream.requests) == 1
    resp.close()


def test_the_status_set_is_configurable(make_client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(respond(418, b""))
    upstream.enqueue(respond(503, b""))
    resp = _retrying(make_client, statuses={418}).get(f"{upstream.url}/x", throw_http_errors=False)
    assert resp.status == 503  # 418 was retried, 503 no longer is
    assert resp.retries_taken == 1
    resp.close()


def test_connect_failures_are_retried(make_client: Any, refused_url: str) -> None:
    attempts: list[str] = []

    def count(request: aifetch.Request) -> Any:
        attempts.append(request.url)
        return (yield Send(request))

    client = _retrying(make_client, attempts=3)
    with pytest.raises(aifetch.NetworkError) as info:
        client.get(f"{refused_url}/x", pipes=[portable(count)])
    assert len(attempts) == 3
    assert info.value.phase == "connect"
    assert isinstance(info.value, ConnectionError)


def test_a_reset_before_the_response_is_retried(make_client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(reset_before_headers())
    resp = _retrying(make_client).post(f"{upstream.url}/echo", json={"a": 1})
    assert resp.json()["body"] == '{"a":1}'
    assert resp.retries_taken == 1


def test_a_reset_is_not_retried_for_methods_left_out(
    make_client: Any, upstream: FakeUpstream
) -> None:
    upstream.enqueue(reset_before_headers())
    with pytest.raises(aifetch.NetworkError):
        _retrying(make_client, methods={"GET"}).post(f"{upstream.url}/echo", body=b"x")
    assert len(upstream.requests) == 1


def test_a_first_byte_timeout_is_retried(make_client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(slow_first_byte(5.0, respond(200, b"late")))
    client = _retrying(make_client)
    resp = client.get(f"{upstream.url}/echo", timeout=aifetch.Timeout(first_byte=0.2))
    assert resp.json()["path"] == "/echo"
    assert resp.retries_taken == 1


def test_a_stream_body_is_never_retried(make_client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(reset_before_headers())
    with pytest.raises(aifetch.NetworkError):
        _retrying(make_client).post(f"{upstream.url}/echo", body=iter([b"once"]))
    assert len(upstream.requests) == 1


def test_never_retried_once_the_body_was_handed_over(
    make_client: Any, upstream: FakeUpstream
) -> None:
    release = threading.Event()
    upstream.enqueue(Truncated(b"data: partial\n\n", release))
    resp = _retrying(make_client, attempts=3).post(f"{upstream.url}/v1/chat/completions", json={})
    chunks = iter(resp.body)
    assert next(chunks) == b"data: partial\n\n"
    release.set()
    with pytest.raises(aifetch.NetworkError) as info:
        for _ in chunks:
            pass
    assert info.value.phase == "body"
    assert len(upstream.requests) == 1


def test_retry_after_seconds(make_client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(status_storm(429, retry_after="1"))
    resp = _retrying(make_client).get(f"{upstream.url}/echo")
    assert resp.retries_taken == 1
    resp.close()
    assert 0.95 <= _gaps(upstream)[0] < 3.0


def test_retry_after_http_date_in_the_past_retries_at_once(
    make_client: Any, upstream: FakeUpstream
) -> None:
    upstream.enqueue(status_storm(503, retry_after=formatdate(time.time() - 60, usegmt=True)))
    with within(2.0):
        resp = _retrying(make_client, backoff=5.0, cap=5.0).get(f"{upstream.url}/echo")
    assert resp.retries_taken == 1
    resp.close()


def test_retry_after_http_date_in_the_future(make_client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(status_storm(429, retry_after=formatdate(time.time() + 3600, usegmt=True)))
    with within(2.0), pytest.raises(aifetch.RateLimitError) as info:
        _retrying(make_client).get(f"{upstream.url}/echo")
    assert info.value.retry_after is not None
    assert 3590 < info.value.retry_after <= 3600
    assert len(upstream.requests) == 1


def test_retry_after_ms(make_client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(status_storm(429, headers={"retry-after-ms": "300", "Retry-After": "30"}))
    resp = _retrying(make_client).get(f"{upstream.url}/echo")
    resp.close()
    assert 0.28 <= _gaps(upstream)[0] < 2.0  # retry-after-ms wins over Retry-After


def test_x_ratelimit_reset(make_client: Any, upstream: FakeUpstream) -> None:
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "300ms"}
    upstream.enqueue(status_storm(429, headers=headers))
    resp = _retrying(make_client).get(f"{upstream.url}/echo")
    assert resp.retries_taken == 1
    resp.close()
    assert 0.28 <= _gaps(upstream)[0] < 2.0


def test_server_asking_more_than_max_server_wait_raises_at_once(
    make_client: Any, upstream: FakeUpstream
) -> None:
    headers = {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}
    upstream.enqueue(status_storm(429, headers=headers), times=3)
    client = _retrying(make_client, attempts=3, max_server_wait=60.0)
    with within(2.0), pytest.raises(aifetch.RateLimitError) as info:
        client.post(f"{upstream.url}/v1/chat/completions", json={})
    assert info.value.retry_after == 360.0
    assert "server asked to wait 360 s" in str(info.value)
    assert len(upstream.requests) == 1


def test_retries_stay_inside_the_total_deadline(make_client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(status_storm(503, retry_after="2"), times=5)
    client = _retrying(make_client, attempts=5)
    with within(1.5), pytest.raises(aifetch.InternalServerError):
        client.get(f"{upstream.url}/echo", timeout=aifetch.Timeout(total=0.5))
    assert len(upstream.requests) == 1  # a 2 s wait would overrun the 0.5 s deadline


def test_total_deadline_covers_attempts_and_waits(make_client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(slow_first_byte(5.0, respond(200, b"late")), times=10)
    client = _retrying(make_client, attempts=10)
    with within(2.0), pytest.raises(aifetch.TimeoutError) as info:
        client.get(f"{upstream.url}/x", timeout=aifetch.Timeout(first_byte=0.2, total=0.7))
    assert info.value.phase in ("total", "first_byte")
    assert 2 <= len(upstream.requests) <= 4


def test_attempts_counts_every_try(make_client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(status_storm(503), times=5)
    resp = _retrying(make_client, attempts=1).get(f"{upstream.url}/x", throw_http_errors=False)
    assert resp.status == 503
    assert len(upstream.requests) == 1  # one try in all: no retry
    resp.close()
    with pytest.raises(ValueError, match="the first included"):
        aifetch.pipes.retry(attempts=0)
