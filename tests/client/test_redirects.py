"""Redirects as the fetch standard's HTTP-redirect fetch (§4.4) follows them."""

from __future__ import annotations

from typing import Any

import pytest

import aifetch
from tests.client.conftest import Hops
from tests.support.fake_upstream import FakeUpstream, redirect, respond

BODY_HEADERS = {"content-type": "application/x-custom", "content-language": "en"}


def _header(echoed: dict[str, Any], name: str) -> str | None:
    return next((v for n, v in echoed["headers"] if n.lower() == name), None)


@pytest.mark.parametrize("status", [301, 302])
def test_301_302_turn_post_into_get_and_drop_the_body(
    client: Any, upstream: FakeUpstream, status: int
) -> None:
    upstream.enqueue(redirect(status, "/echo/next"), path="/start")
    resp = client.post(f"{upstream.url}/start", body=b"payload", headers=BODY_HEADERS)
    echoed = resp.json()
    assert echoed["method"] == "GET"
    assert echoed["body"] == ""
    for name in (*BODY_HEADERS, "content-length", "transfer-encoding"):
        assert _header(echoed, name) is None, name
    assert resp.redirected is True
    assert resp.url == f"{upstream.url}/echo/next"


@pytest.mark.parametrize("status", [301, 302])
def test_301_302_keep_put_with_its_body(client: Any, upstream: FakeUpstream, status: int) -> None:
    upstream.enqueue(redirect(status, "/echo/next"), path="/start")
    echoed = client.put(f"{upstream.url}/start", body=b"payload").json()
    assert echoed["method"] == "PUT"
    assert echoed["body"] == "payload"


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_303_turns_anything_but_head_into_get(
    client: Any, upstream: FakeUpstream, method: str
) -> None:
    upstream.enqueue(redirect(303, "/echo/next"), path="/start")
    echoed = getattr(client, method)(
        f"{upstream.url}/start", body=b"payload", headers=BODY_HEADERS
    ).json()
    assert echoed["method"] == "GET"
    assert echoed["body"] == ""
    assert _header(echoed, "content-type") is None
    assert _header(echoed, "content-language") is None


def test_303_keeps_head(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(redirect(303, "/echo/next"), path="/start")
    resp = client.head(f"{upstream.url}/start")
    resp.close()
    assert resp.status == 200
    assert [(r.method, r.path) for r in upstream.requests] == [
        ("HEAD", "/start"),
        ("HEAD", "/echo/next"),
    ]


@pytest.mark.parametrize("status", [307, 308])
def test_307_308_keep_method_and_body(client: Any, upstream: FakeUpstream, status: int) -> None:
    upstream.enqueue(redirect(status, "/echo/next"), path="/start")
    echoed = client.post(f"{upstream.url}/start", body=b"payload", headers=BODY_HEADERS).json()
    assert echoed["method"] == "POST"
    assert echoed["body"] == "payload"
    assert _header(echoed, "content-type") == "application/x-custom"


def test_307_with_a_one_shot_stream_body_cannot_be_followed(
    client: Any, upstream: FakeUpstream
) -> None:
    upstream.enqueue(redirect(307, "/echo/next"), path="/start")
    with pytest.raises(aifetch.RedirectError, match="one-shot stream"):
        client.post(f"{upstream.url}/start", body=iter([b"a", b"b"]))


def test_twenty_hops_are_followed(client: Any, upstream: FakeUpstream) -> None:
    upstream.route("GET", "/hops/*", Hops())
    resp = client.get(f"{upstream.url}/hops/20")
    assert resp.text() == "done"
    assert len(upstream.requests) == 21


def test_the_twenty_first_hop_fails(client: Any, upstream: FakeUpstream) -> None:
    upstream.route("GET", "/hops/*", Hops(status=308))
    with pytest.raises(aifetch.RedirectError, match="more than 20 redirects"):
        client.get(f"{upstream.url}/hops/21")
    assert len(upstream.requests) == 21  # the 21st redirect is never followed


def test_authorization_is_dropped_on_a_hop_to_another_origin(
    client: Any, upstream: FakeUpstream, other_origin: str
) -> None:
    upstream.enqueue(redirect(302, f"{other_origin}/echo/there"), path="/start")
    echoed = client.get(
        f"{upstream.url}/start", headers={"Authorization": "Bearer sk-secret", "X-Keep": "1"}
    ).json()
    assert _header(echoed, "authorization") is None
    assert _header(echoed, "x-keep") == "1"
    assert upstream.requests[0].header("authorization") == "Bearer sk-secret"
    assert upstream.requests[1].header("host") == other_origin.removeprefix("http://")


def test_authorization_is_kept_on_a_same_origin_hop(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(redirect(302, f"{upstream.url}/echo/here"), path="/start")
    echoed = client.get(f"{upstream.url}/start", headers={"Authorization": "Bearer sk-x"}).json()
    assert _header(echoed, "authorization") == "Bearer sk-x"


def test_the_location_fragment_is_never_sent(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(redirect(302, "/echo/next?a=%2F#frag"), path="/start")
    echoed = client.get(f"{upstream.url}/start").json()
    assert echoed["target"] == "/echo/next?a=%2F"


def test_relative_location_resolves_against_the_current_url(
    client: Any, upstream: FakeUpstream
) -> None:
    upstream.enqueue(redirect(302, "../echo/x%2Fy"), path="/a/b")
    echoed = client.get(f"{upstream.url}/a/b").json()
    assert echoed["target"] == "/echo/x%2Fy"


def test_manual_returns_the_redirect_itself(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(redirect(302, "/echo/next"), path="/start")
    resp = client.get(f"{upstream.url}/start", redirect="manual")
    assert resp.status == 302
    assert resp.type == "opaqueredirect"
    assert resp.ok is False
    assert resp.headers["location"] == "/echo/next"
    assert resp.redirected is False
    resp.close()
    assert len(upstream.requests) == 1


def test_manual_as_a_client_option(make_client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(redirect(308, "/echo/next"), path="/start")
    resp = make_client(redirect="manual").post(f"{upstream.url}/start", body=b"x")
    assert (resp.status, resp.type) == (308, "opaqueredirect")
    resp.close()


def test_error_mode_raises_redirect_error(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(redirect(301, "/echo/next"), path="/start")
    with pytest.raises(aifetch.RedirectError, match="redirect='error'"):
        client.get(f"{upstream.url}/start", redirect="error")
    assert len(upstream.requests) == 1


def test_a_3xx_without_location_is_returned_as_is(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(respond(304, b""), path="/start")
    resp = client.get(f"{upstream.url}/start", throw_http_errors=False)
    assert resp.status == 304
    assert resp.type == "basic"
    resp.close()


def test_a_redirect_to_a_url_with_credentials_is_refused(
    client: Any, upstream: FakeUpstream
) -> None:
    upstream.enqueue(redirect(302, f"http://u:p@127.0.0.1:{upstream.port}/echo"), path="/start")
    with pytest.raises(aifetch.RedirectError, match="credentials"):
        client.get(f"{upstream.url}/start")
    assert len(upstream.requests) == 1


def test_the_connection_is_reused_across_hops(client: Any, upstream: FakeUpstream) -> None:
    upstream.route("GET", "/hops/*", Hops())
    assert client.get(f"{upstream.url}/hops/5").text() == "done"
    assert len({r.connection_id for r in upstream.requests}) == 1
