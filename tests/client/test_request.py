"""What goes on the wire: methods, request bodies, params, headers and the URL itself."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

import aifetch
from tests.support.fake_upstream import FakeUpstream


def _header(echoed: dict[str, Any], name: str) -> str | None:
    return next((v for n, v in echoed["headers"] if n.lower() == name), None)


@pytest.mark.parametrize("verb", ["get", "head", "options", "post", "put", "patch", "delete"])
def test_verb_shortcuts_send_their_method(client: Any, upstream: FakeUpstream, verb: str) -> None:
    resp = getattr(client, verb)(f"{upstream.url}/echo")
    resp.close()
    assert upstream.requests[-1].method == verb.upper()


def test_bytes_body(client: Any, upstream: FakeUpstream) -> None:
    echoed = client.post(f"{upstream.url}/echo", body=b"\x00raw\xff").json()
    assert base64.b64decode(echoed["body_base64"]) == b"\x00raw\xff"
    assert _header(echoed, "content-length") == "5"


def test_str_body_is_utf8_text(client: Any, upstream: FakeUpstream) -> None:
    echoed = client.post(f"{upstream.url}/echo", body="héllo").json()
    assert echoed["body"] == "héllo"
    assert _header(echoed, "content-type") == "text/plain;charset=UTF-8"


def test_json_body(client: Any, upstream: FakeUpstream) -> None:
    echoed = client.post(f"{upstream.url}/echo", json={"model": "m", "n": [1, 2]}).json()
    assert echoed["body"] == '{"model":"m","n":[1,2]}'
    assert _header(echoed, "content-type") == "application/json"


def test_json_body_keeps_a_content_type_the_caller_gave(
    client: Any, upstream: FakeUpstream
) -> None:
    echoed = client.post(
        f"{upstream.url}/echo", json=[1], headers={"content-type": "application/vnd.x+json"}
    ).json()
    assert _header(echoed, "content-type") == "application/vnd.x+json"


def test_iterable_body_is_streamed_chunked(client: Any, upstream: FakeUpstream) -> None:
    def parts() -> Iterator[bytes]:
        yield b"one,"
        yield b"two,"
        yield b"three"

    echoed = client.post(f"{upstream.url}/echo", body=parts()).json()
    assert echoed["body"] == "one,two,three"
    assert _header(echoed, "transfer-encoding") == "chunked"
    assert _header(echoed, "content-length") is None


def test_async_iterable_body_is_streamed(make_client: Any, upstream: FakeUpstream) -> None:
    # Only the async clients take async iterables; the sync one streams plain iterables.
    client = make_client()
    if make_client.name != "sync":

        async def parts() -> Any:
            yield b"a"
            yield b"b"

        echoed = client.post(f"{upstream.url}/echo", body=parts()).json()
        assert echoed["body"] == "ab"
        assert _header(echoed, "transfer-encoding") == "chunked"
    else:
        echoed = client.post(f"{upstream.url}/echo", body=iter([b"a", b"b"])).json()
        assert echoed["body"] == "ab"


def test_body_and_json_together_are_refused(client: Any, upstream: FakeUpstream) -> None:
    with pytest.raises(TypeError, match="either body= or json="):
        client.post(f"{upstream.url}/echo", body=b"x", json={})
    assert upstream.requests == []


def test_get_with_a_body_is_refused(client: Any, upstream: FakeUpstream) -> None:
    with pytest.raises(TypeError, match="cannot have a body"):
        client.get(f"{upstream.url}/echo", body=b"x")


def test_params_are_encoded_into_the_query(client: Any, upstream: FakeUpstream) -> None:
    echoed = client.get(
        f"{upstream.url}/echo?a=1", params={"q": "two words", "flag": True, "n": 3}
    ).json()
    assert echoed["query"] == "a=1&q=two+words&flag=true&n=3"
    echoed = client.get(f"{upstream.url}/echo", params=[("k", "v"), ("k", "w")]).json()
    assert echoed["query"] == "k=v&k=w"


def test_request_headers_are_sent_and_client_defaults_merged(
    make_client: Any, upstream: FakeUpstream
) -> None:
    client = make_client(headers={"X-Default": "d", "X-Over": "client"})
    echoed = client.get(
        f"{upstream.url}/echo", headers={"x-over": "request", "X-Extra": "e"}
    ).json()
    assert _header(echoed, "x-default") == "d"
    assert _header(echoed, "x-over") == "request"
    assert _header(echoed, "x-extra") == "e"
    assert [n for n, _ in echoed["headers"] if n.lower() == "x-over"] == ["x-over"]


def test_a_request_object_can_be_fetched(client: Any, upstream: FakeUpstream) -> None:
    request = aifetch.Request(f"{upstream.url}/echo", method="PUT", headers={"X-A": "1"}, body=b"z")
    echoed = client.fetch(request).json()
    assert echoed["method"] == "PUT"
    assert _header(echoed, "x-a") == "1"
    assert echoed["body"] == "z"


@pytest.mark.parametrize("bad", ["a\r\nInjected: 1", "a\nb", "a\rb", "a\0b"])
def test_header_values_with_cr_lf_are_refused(
    client: Any, upstream: FakeUpstream, bad: str
) -> None:
    with pytest.raises(ValueError, match="invalid character"):
        client.get(f"{upstream.url}/echo", headers={"X-Evil": bad})
    assert upstream.requests == []


def test_header_names_with_separators_are_refused() -> None:
    for bad in ("X Evil", "X:Evil", "X\r\nEvil", ""):
        with pytest.raises(ValueError, match="invalid header name"):
            aifetch.Headers({bad: "v"})


def test_headers_object() -> None:
    h = aifetch.Headers([("Accept", "a"), ("X-Multi", "1"), ("accept", "b")])
    assert h.get("ACCEPT") == "a, b"
    assert h.get_all("accept") == ["a", "b"]
    assert h.items() == [("Accept", "a"), ("X-Multi", "1"), ("accept", "b")]
    h.append("x-multi", "2")
    assert h["X-MULTI"] == "1, 2"
    h.set("X-Multi", "3")
    assert h.get_all("x-multi") == ["3"]
    h.delete("accept")
    assert "Accept" not in h
    assert list(h) == ["x-multi"]
    assert h == {"x-multi": "3"}


# --------------------------------------------------------------------------- URLs


def test_escapes_the_caller_wrote_are_not_re_encoded(client: Any, upstream: FakeUpstream) -> None:
    echoed = client.get(f"{upstream.url}/echo/a%2Fb/c%20d?x=%2F%26y").json()
    assert echoed["target"] == "/echo/a%2Fb/c%20d?x=%2F%26y"


def test_spaces_and_non_ascii_are_encoded_once(client: Any, upstream: FakeUpstream) -> None:
    echoed = client.get(f"{upstream.url}/echo/a b/é?q=x y").json()
    assert echoed["target"] == "/echo/a%20b/%C3%A9?q=x%20y"


def test_the_fragment_is_never_sent(client: Any, upstream: FakeUpstream) -> None:
    echoed = client.get(f"{upstream.url}/echo/p?q=1#secret-fragment").json()
    assert echoed["target"] == "/echo/p?q=1"
    assert "#" not in upstream.requests[-1].target


def test_dot_segments_are_resolved(client: Any, upstream: FakeUpstream) -> None:
    echoed = client.get(f"{upstream.url}/x/../echo/./y").json()
    assert echoed["target"] == "/echo/y"


@pytest.mark.parametrize("userinfo", ["user:pass@", "user@", "sk-secret@"])
def test_credentials_in_the_url_are_refused(
    client: Any, upstream: FakeUpstream, userinfo: str
) -> None:
    url = f"http://{userinfo}127.0.0.1:{upstream.port}/echo"
    with pytest.raises(aifetch.InvalidURLError, match="credentials") as info:
        client.get(url)
    assert "pass" not in str(info.value)
    assert "sk-secret" not in str(info.value)
    assert upstream.requests == []


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "http:///nohost"])
def test_unsupported_urls_are_refused(client: Any, url: str) -> None:
    with pytest.raises(aifetch.InvalidURLError):
        client.get(url)


def test_relative_url_needs_a_base_url(make_client: Any, upstream: FakeUpstream) -> None:
    with pytest.raises(aifetch.InvalidURLError, match="relative URL"):
        make_client().get("/echo")
    client = make_client(base_url=f"{upstream.url}/echo/v1")
    assert client.get("/models").json()["path"] == "/echo/v1/models"
