"""Response ids shared through Redis (``state: redis://...``): two gateways on one Redis,
each with its own event loop, Redis client and memory of ids, as two processes (or
``--workers``) have. A response made through one is reached, continued on the upstream
that made it, and kept from other callers through the other; with Redis away each keeps
to what it made itself (``on_state_error: open``) or answers 503 (``closed``)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import redis

from tests.support.fake_upstream import server_error
from tests.support.services import RedisServer, redis_url

from ..conftest import RunningGateway
from .conftest import OTHER_KEY, WAIT, Fakes, Serve, dialect_config
from .test_responses import TEXT, client


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"aifetch-test:{secrets.token_hex(6)}:"
    yield prefix
    with redis.Redis.from_url(redis_url()) as store:
        keys = list(store.scan_iter(match=prefix + "*", count=1000))
        if keys:
            store.delete(*keys)


def shared(fakes: Fakes, url: str, prefix: str, **sections: Any) -> Any:
    return dialect_config(fakes, state=url, governance={"prefix": prefix}, **sections)


@pytest.mark.parametrize("stream", [False, True])
def test_a_response_made_through_one_gateway_is_reached_through_another(
    fakes: Fakes, serve: Serve, prefix: str, stream: bool
) -> None:
    one = serve(shared(fakes, redis_url(), prefix))
    two = serve(shared(fakes, redis_url(), prefix))
    fakes.resp_a.enqueue(server_error(500))  # the first call falls back: only b has it
    with client(one) as oa:
        if stream:
            events = list(oa.responses.create(model="resp", input="Hi", stream=True))
            made_id = events[-1].response.id  # type: ignore[union-attr]
        else:
            made_id = oa.responses.create(model="resp", input="Hi").id
    assert made_id.startswith("resp_b_")
    with client(two) as oa:
        assert oa.responses.retrieve(made_id).output_text == TEXT
        follow = oa.responses.create(model="resp", input="And then?", previous_response_id=made_id)
        assert follow.output_text == f"{TEXT} (after {made_id})"
    assert len(fakes.resp_a.requests) == 1  # only the failed first call went to a
    with client(two, OTHER_KEY) as other:
        with pytest.raises(openai.NotFoundError) as theirs:
            other.responses.retrieve(made_id)
        with pytest.raises(openai.BadRequestError) as continued:
            other.responses.create(model="resp", input="Hi", previous_response_id=made_id)
    assert theirs.value.code == "response_not_found"
    assert continued.value.code == "previous_response_not_found"
    with client(two) as oa:
        oa.responses.delete(made_id)
    with client(one) as oa, pytest.raises(openai.NotFoundError):
        oa.responses.retrieve(made_id)  # gone upstream, whichever gateway asks
    with redis.Redis.from_url(redis_url()) as store:
        assert store.get(f"{prefix}response:{made_id}") is None  # deleted through two
        kept = store.get(f"{prefix}response:{follow.id}")
        ttl = store.ttl(f"{prefix}response:{follow.id}")
    assert kept is not None
    assert b'"resp-b"' in kept
    assert b'"app"' in kept
    assert 86000 < ttl <= 86400  # governance.response_ids_ttl's default: a day


def test_an_id_in_redis_naming_an_unknown_upstream_is_not_found(
    fakes: Fakes, serve: Serve, prefix: str
) -> None:
    gateway = serve(shared(fakes, redis_url(), prefix))
    with redis.Redis.from_url(redis_url()) as store:
        # Another deployment on the same prefix, or garbage: neither is followed.
        store.set(f"{prefix}response:resp_elsewhere", b'["not-here","app","resp"]')
        store.set(f"{prefix}response:resp_garbage", b"{not json")
    with client(gateway) as oa:
        for response_id in ("resp_elsewhere", "resp_garbage"):
            with pytest.raises(openai.NotFoundError) as unknown:
                oa.responses.retrieve(response_id)
            assert unknown.value.code == "response_not_found"
    assert fakes.resp_a.requests == []
    assert fakes.resp_b.requests == []


def _state_up(gateway: RunningGateway) -> bool:
    page = httpx.get(gateway.url + "/metrics", timeout=WAIT).text
    return "aifetch_gateway_state_up 1.0" in page


def _until_state_up(*gateways: RunningGateway) -> None:
    deadline = time.monotonic() + WAIT
    while not all(_state_up(g) for g in gateways):
        assert time.monotonic() < deadline, "the gateways did not reconnect to Redis"
        time.sleep(0.05)


def test_with_redis_away_each_gateway_keeps_to_its_own_ids(fakes: Fakes, serve: Serve) -> None:
    server = RedisServer().start()
    try:
        opened = serve(dialect_config(fakes, state=server.url))
        closed = serve(dialect_config(fakes, state=server.url, on_state_error="closed"))
        with client(opened) as oa:
            before = oa.responses.create(model="resp", input="Hi").id
        server.stop()
        with client(opened) as oa:
            during = oa.responses.create(model="resp", input="Hi").id  # kept here only
            assert oa.responses.retrieve(before).output_text == TEXT  # known here
            assert oa.responses.retrieve(during).output_text == TEXT
        with client(closed) as oa, pytest.raises(openai.InternalServerError) as refused:
            oa.responses.retrieve(before)
        assert refused.value.status_code == 503
        assert refused.value.code == "state_unavailable"
        assert refused.value.response.headers["retry-after"] == "1"
        assert not _state_up(opened)
        assert not _state_up(closed)

        server.start()  # the same port, empty: both reconnect by themselves
        _until_state_up(opened, closed)
        with client(opened) as oa:
            after = oa.responses.create(model="resp", input="Hi").id
        with client(closed) as oa:
            assert oa.responses.retrieve(after).output_text == TEXT
            with pytest.raises(openai.NotFoundError):
                oa.responses.retrieve(during)  # made while Redis was away: not shared
    finally:
        server.close()
