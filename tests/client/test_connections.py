"""Connection hygiene: keep-alive reuse, early close and abort free their connection, no
leaks over many requests, network errors, and the one-shot ``aifetch.fetch``."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import aifetch
from tests.client.conftest import (
    GUARD,
    HeadThenStall,
    eventually,
    eventually_async,
    open_fds,
    within,
)
from tests.support.fake_upstream import (
    FakeUpstream,
    refuse,
    reset_before_headers,
    reset_mid_stream,
)


def test_sequential_requests_reuse_one_connection(client: Any, upstream: FakeUpstream) -> None:
    for _ in range(3):
        client.get(f"{upstream.url}/echo").bytes()
    client.post(f"{upstream.url}/echo", json={"a": 1}).json()
    assert upstream.connections_opened == 1
    assert len({r.connection_id for r in upstream.requests}) == 1


def test_a_response_closed_early_frees_its_connection(
    make_client: Any, upstream: FakeUpstream
) -> None:
    client = make_client(max_connections=1)
    upstream.enqueue(HeadThenStall(b"first"), path="/stall")
    resp = client.get(f"{upstream.url}/stall")
    assert next(iter(resp.body)) == b"first"
    resp.close()
    stalled = upstream.requests[0].connection_id
    assert upstream.wait_for_close(stalled, GUARD) is not None
    # With one connection allowed, this would wait forever if the slot were still taken.
    with within(GUARD):
        assert client.get(f"{upstream.url}/echo").json()["connection_id"] != stalled


def test_an_unread_response_closed_frees_its_connection(
    make_client: Any, upstream: FakeUpstream
) -> None:
    client = make_client(max_connections=1)
    upstream.enqueue(HeadThenStall(b"first"), path="/stall")
    with client.get(f"{upstream.url}/stall"):
        pass
    assert upstream.wait_for_close(upstream.requests[0].connection_id, GUARD) is not None
    with within(GUARD):
        assert client.get(f"{upstream.url}/echo").status == 200


def test_an_error_response_leaves_its_connection_reusable(
    client: Any, upstream: FakeUpstream
) -> None:
    with pytest.raises(aifetch.NotFoundError):
        client.get(f"{upstream.url}/missing")
    client.get(f"{upstream.url}/echo").bytes()
    assert upstream.connections_opened == 1


def test_closing_the_client_closes_its_connections(
    make_client: Any, upstream: FakeUpstream
) -> None:
    client = make_client()
    client.get(f"{upstream.url}/echo").bytes()
    assert upstream.open_connections == 1
    client.close()
    assert eventually(lambda: upstream.open_connections == 0)


# --------------------------------------------------------------------------- failures


def test_refused_connection_is_a_network_error(client: Any, refused_url: str) -> None:
    with pytest.raises(aifetch.NetworkError) as info:
        client.get(f"{refused_url}/x")
    assert isinstance(info.value, ConnectionError)
    assert info.value.phase == "connect"


@pytest.mark.parametrize("behaviour", [reset_before_headers, refuse])
def test_connection_lost_before_the_response(
    client: Any, upstream: FakeUpstream, behaviour: Any
) -> None:
    upstream.enqueue(behaviour())
    with pytest.raises(aifetch.NetworkError) as info:
        client.post(f"{upstream.url}/x", body=b"x")
    assert info.value.phase == "send"
    assert len(upstream.requests) == 1  # sent once: no hidden retry in either transport


def test_reset_mid_stream_is_a_network_error(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(reset_mid_stream(after_events=2))
    resp = client.post(f"{upstream.url}/v1/chat/completions", json={})
    with pytest.raises(aifetch.NetworkError) as info:
        for _ in resp.body:
            pass
    assert info.value.phase == "body"
    with within(GUARD):  # the client is still usable
        assert client.get(f"{upstream.url}/echo").status == 200


# --------------------------------------------------------------------------- leaks

REQUESTS = 10_000
WORKERS = 8


def _one(client: Any, url: str, i: int) -> str:
    if i % 2:
        resp = client.get(f"{url}/echo")
        assert resp.json()["path"] == "/echo"
        return "read"
    ctrl = aifetch.AbortController()
    resp = client.get(f"{url}/stall", signal=ctrl.signal)
    chunks = iter(resp.body)
    assert next(chunks) == b"first"
    ctrl.abort("done with it")
    try:
        next(chunks)
    except aifetch.AbortError:
        return "aborted"
    raise AssertionError("an aborted body went on reading")


@pytest.mark.slow  # 4-9 s a flavour
def test_ten_thousand_requests_half_aborted_mid_body_leak_nothing(
    make_client: Any, upstream: FakeUpstream
) -> None:
    upstream.route("GET", "/stall", HeadThenStall(b"first"))
    fds_before = open_fds()
    client = make_client(max_connections=WORKERS)
    counts = {"read": 0, "aborted": 0}
    lock = threading.Lock()

    def work(worker: int) -> None:
        for i in range(worker, REQUESTS, WORKERS):
            outcome = _one(client, upstream.url, i)
            with lock:
                counts[outcome] += 1

    with ThreadPoolExecutor(WORKERS) as pool:
        for future in [pool.submit(work, w) for w in range(WORKERS)]:
            future.result()
    assert counts == {"read": REQUESTS // 2, "aborted": REQUESTS // 2}
    # Every aborted connection was closed (the server saw it go); only the pool's idle
    # keep-alive connections remain.
    assert eventually(lambda: upstream.open_connections <= WORKERS), upstream.open_connections
    assert upstream.connections_opened >= REQUESTS // 2
    client.close()
    assert eventually(lambda: upstream.open_connections == 0), upstream.open_connections
    assert eventually(lambda: open_fds() <= fds_before), (open_fds(), fds_before)


# --------------------------------------------------------------------------- fetch()


async def test_one_shot_fetch_closes_its_client(upstream: FakeUpstream) -> None:
    fds_before = open_fds()
    resp = await aifetch.fetch(f"{upstream.url}/echo", method="POST", json={"x": 1})
    assert (await resp.json())["body"] == '{"x":1}'
    assert (
        await upstream.wait_for_close_async(upstream.requests[0].connection_id, GUARD) is not None
    )
    assert await eventually_async(lambda: open_fds() <= fds_before), (open_fds(), fds_before)


async def test_one_shot_fetch_closes_its_client_on_error(upstream: FakeUpstream) -> None:
    with pytest.raises(aifetch.NotFoundError):
        await aifetch.fetch(f"{upstream.url}/missing")
    assert (
        await upstream.wait_for_close_async(upstream.requests[0].connection_id, GUARD) is not None
    )


async def test_one_shot_fetch_closes_its_client_when_closed_early(upstream: FakeUpstream) -> None:
    upstream.enqueue(HeadThenStall(b"first"))
    resp = await aifetch.fetch(f"{upstream.url}/x")
    async for chunk in resp.body:
        assert chunk == b"first"
        break
    await resp.aclose()
    assert (
        await upstream.wait_for_close_async(upstream.requests[0].connection_id, GUARD) is not None
    )
