"""The bytes a caller receives through the gateway are the upstream's bytes."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from tests.support.fake_upstream import FakeUpstream, chat_stream, malformed_sse, trickle

from .conftest import RunningGateway
from .helpers import chat, post_raw


def direct(fake: FakeUpstream, body: bytes) -> bytes:
    """The same upstream asked directly, with exactly the given body."""
    with httpx.stream(
        "POST",
        fake.url + "/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    ) as response:
        return b"".join(response.iter_raw())


@pytest.mark.parametrize(
    "behaviour",
    [
        chat_stream(content="one two three four five six seven", n_chunks=7),
        chat_stream(content="with comments", n_chunks=3, comments_between=True, delay=0.01),
        trickle(),  # one byte per upstream chunk
        malformed_sse(),  # junk lines, lone CR and CRLF endings
    ],
    ids=["chunks", "comments", "trickle", "malformed"],
)
def test_stream_bytes_equal_upstream_bytes_when_usage_asked(
    fake: FakeUpstream, gateway: RunningGateway, behaviour: object
) -> None:
    fake.enqueue(behaviour)  # type: ignore[arg-type]
    _, _, through = post_raw(gateway.url, chat(stream=True, stream_options={"include_usage": True}))
    sent = fake.requests[-1].body
    fake.enqueue(behaviour)  # type: ignore[arg-type]
    assert through == direct(fake, sent)


def test_usage_chunk_is_stripped_when_not_asked(
    fake: FakeUpstream, gateway: RunningGateway
) -> None:
    _, _, through = post_raw(gateway.url, chat(stream=True))
    upstream_body = msgspec.json.decode(fake.requests[-1].body)
    assert upstream_body["stream_options"] == {"include_usage": True}
    del upstream_body["stream_options"]
    # What the caller would have seen from the upstream directly, without usage.
    assert through == direct(fake, msgspec.json.encode(upstream_body))
    assert b'"usage"' not in through
    # ...and the usage was recorded all the same.
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'aifetch_gateway_tokens_total{caller="",kind="completion",model="gpt"}' in metrics
