"""Response: status fields, the one-shot body and its decodings, response headers."""

from __future__ import annotations

import codecs
import gzip
from typing import Any

import pytest

import aifetch
from tests.client.conftest import Chunks, Hops
from tests.support.fake_upstream import FakeUpstream, chat_stream, raw, respond


@pytest.mark.parametrize(
    ("status", "ok"),
    [(200, True), (204, True), (299, True), (300, False), (400, False), (503, False)],
)
def test_ok_is_exactly_200_to_299(
    client: Any, upstream: FakeUpstream, status: int, ok: bool
) -> None:
    upstream.enqueue(respond(status, b"", reason="Whatever"))
    resp = client.get(f"{upstream.url}/s", throw_http_errors=False)
    assert resp.status == status
    assert resp.ok is ok
    resp.close()


def test_status_text_is_the_servers_reason_phrase(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(respond(200, b"x", reason="Totally Fine"))
    resp = client.get(f"{upstream.url}/s")
    assert resp.status_text == "Totally Fine"
    resp.close()


@pytest.mark.parametrize(
    ("status", "phrase"), [(200, "OK"), (404, "Not Found"), (422, "Unprocessable Content")]
)
def test_status_text_falls_back_to_the_standard_phrase(
    client: Any, upstream: FakeUpstream, status: int, phrase: str
) -> None:
    upstream.enqueue(respond(status, b"", reason=""))
    resp = client.get(f"{upstream.url}/s", throw_http_errors=False)
    assert resp.status_text == phrase
    resp.close()


def test_plain_response_fields(client: Any, upstream: FakeUpstream) -> None:
    resp = client.get(f"{upstream.url}/echo")
    assert resp.url == f"{upstream.url}/echo"
    assert resp.redirected is False
    assert resp.type == "basic"
    assert resp.retries_taken == 0
    assert resp.body_used is False
    resp.close()


def test_url_and_redirected_after_redirects(client: Any, upstream: FakeUpstream) -> None:
    upstream.route("GET", "/hops/*", Hops())
    resp = client.get(f"{upstream.url}/hops/3")
    assert resp.url == f"{upstream.url}/hops/0"
    assert resp.redirected is True
    assert resp.type == "basic"
    assert resp.text() == "done"


def test_body_is_one_shot(client: Any, upstream: FakeUpstream) -> None:
    resp = client.get(f"{upstream.url}/echo")
    assert resp.json()["method"] == "GET"
    assert resp.body_used is True
    with pytest.raises(aifetch.BodyUsedError, match="already read"):
        resp.text()
    with pytest.raises(aifetch.BodyUsedError):
        resp.body  # noqa: B018 - taking the body is what raises
    with pytest.raises(TypeError):  # fetch raises TypeError for the same
        resp.bytes()


def test_body_iterates_raw_chunks_as_they_arrive(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(Chunks((b"alpha", b"beta", b"gamma")))
    resp = client.get(f"{upstream.url}/c")
    received = list(resp.body)
    assert b"".join(received) == b"alphabetagamma"
    assert resp.body_used is True
    with pytest.raises(aifetch.BodyUsedError):
        resp.bytes()


def test_bytes_text_json(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(respond(200, {"a": [1, 2]}))
    assert client.get(f"{upstream.url}/j").json() == {"a": [1, 2]}
    upstream.enqueue(respond(200, "héllo"))
    assert client.get(f"{upstream.url}/t").text() == "héllo"
    upstream.enqueue(respond(200, b"\x00\x01\xff"))
    assert client.get(f"{upstream.url}/b").bytes() == b"\x00\x01\xff"


def test_text_and_json_strip_a_utf8_bom(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(respond(200, codecs.BOM_UTF8 + b"hi", [("Content-Type", "text/plain")]))
    assert client.get(f"{upstream.url}/t").text() == "hi"
    upstream.enqueue(
        respond(200, codecs.BOM_UTF8 + b'{"k": 1}', [("Content-Type", "application/json")])
    )
    assert client.get(f"{upstream.url}/j").json() == {"k": 1}
    upstream.enqueue(respond(200, codecs.BOM_UTF8 + b"raw", [("Content-Type", "text/plain")]))
    assert client.get(f"{upstream.url}/b").bytes() == codecs.BOM_UTF8 + b"raw"  # bytes() is raw


def test_text_and_json_replace_invalid_bytes(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(respond(200, b"ok \xff\xfe end", [("Content-Type", "text/plain")]))
    assert client.get(f"{upstream.url}/t").text() == "ok \ufffd\ufffd end"
    upstream.enqueue(respond(200, b'{"k": "a\xffb"}', [("Content-Type", "application/json")]))
    assert client.get(f"{upstream.url}/j").json() == {"k": "a\ufffdb"}


def test_text_uses_the_charset_of_content_type(client: Any, upstream: FakeUpstream) -> None:
    body = "café naïve".encode("latin-1")
    upstream.enqueue(respond(200, body, [("Content-Type", 'text/plain; charset="ISO-8859-1"')]))
    assert client.get(f"{upstream.url}/t").text() == "café naïve"
    upstream.enqueue(respond(200, "café".encode(), [("Content-Type", "text/plain")]))
    assert client.get(f"{upstream.url}/t").text() == "café"  # UTF-8 by default


def test_json_that_is_not_json_raises_value_error(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(respond(200, b"<html>", [("Content-Type", "text/html")]))
    with pytest.raises(ValueError, match="not valid JSON"):
        client.get(f"{upstream.url}/j").json()


def test_response_headers_are_case_insensitive_multi_valued_and_ordered(
    client: Any, upstream: FakeUpstream
) -> None:
    upstream.enqueue(
        raw(
            b"HTTP/1.1 200 OK\r\nX-First: 1\r\nSet-Cookie: a=1\r\nX-Multi: one\r\n"
            b"set-cookie: b=2\r\nX-Multi: two\r\nContent-Length: 2\r\n\r\nok"
        )
    )
    resp = client.get(f"{upstream.url}/h")
    headers = resp.headers
    assert isinstance(headers, aifetch.Headers)
    assert headers.get("x-first") == headers.get("X-FIRST") == "1"
    assert headers["X-Multi"] == "one, two"
    assert headers.get_all("set-cookie") == ["a=1", "b=2"]
    assert "x-multi" in headers
    assert "x-missing" not in headers
    assert headers.get("x-missing") is None
    names = [name.lower() for name, _ in headers.items()]
    assert names.index("x-first") < names.index("set-cookie") < names.index("x-multi")
    assert resp.text() == "ok"


def test_context_manager_closes_the_response(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(Chunks((b"a", b"b")))
    with client.get(f"{upstream.url}/c") as resp:
        assert resp.status == 200
    # Closed without reading: the rest of the body is gone, and reading it says so
    # rather than passing the discarded rest off as an empty body (fetch: "disturbed").
    assert resp.body_used is True
    with pytest.raises(aifetch.BodyUsedError, match="closed"):
        resp.bytes()


def test_repr_shows_status_and_url(client: Any, upstream: FakeUpstream) -> None:
    resp = client.get(f"{upstream.url}/echo")
    text = repr(getattr(resp, "raw", resp))
    assert "200 OK" in text
    assert f"{upstream.url}/echo" in text
    resp.close()


def test_events_reads_a_server_sent_event_stream(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(chat_stream(content="Hello world"))
    resp = client.post(f"{upstream.url}/v1/chat/completions", json={"stream": True})
    events = list(resp.events())
    assert events[-1].data == "[DONE]"
    assert all(e.event == "message" for e in events)
    assert len(events) >= 3


def test_events_of_a_non_event_stream_raise_content_type_error(
    client: Any, upstream: FakeUpstream
) -> None:
    upstream.enqueue(respond(200, {"not": "a stream"}))
    resp = client.get(f"{upstream.url}/x")
    with pytest.raises(aifetch.ContentTypeError, match="application/json"):
        list(resp.events())


def test_gzip_bodies_are_decompressed(client: Any, upstream: FakeUpstream) -> None:
    payload = gzip.compress(b'{"zipped": true}')
    upstream.enqueue(
        respond(200, payload, [("Content-Type", "application/json"), ("Content-Encoding", "gzip")])
    )
    assert client.get(f"{upstream.url}/z").json() == {"zipped": True}
