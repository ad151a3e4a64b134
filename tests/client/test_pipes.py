"""Pipes: order, short-circuit, calling next more than once, wrapping the body, built-ins.

Each pipe is written once as a generator (see ``conftest``): ``response = yield Send(req)``.
"""

from __future__ import annotations

from typing import Any

import pytest

import aifetch
from tests.client.conftest import Close, MapBody, Send, Synthetic, portable
from tests.support.fake_upstream import FakeUpstream, respond


def _recorder(name: str, log: list[str]) -> Any:
    def gen(request: aifetch.Request) -> Any:
        log.append(f"{name}>")
        request.headers.append("X-Trail", name)
        response = yield Send(request)
        log.append(f"<{name}")
        return response

    return portable(gen)


def _trail(upstream: FakeUpstream) -> list[str]:
    return upstream.requests[-1].header_all("x-trail")


def test_pipes_run_in_order_outermost_first(make_client: Any, upstream: FakeUpstream) -> None:
    log: list[str] = []
    client = make_client(pipes=[_recorder("a", log), _recorder("b", log)])
    client.get(f"{upstream.url}/echo").close()
    assert log == ["a>", "b>", "<b", "<a"]
    # The sync client folds repeated names into one line (RFC 9110 §5.3): same meaning.
    assert ", ".join(_trail(upstream)) == "a, b"


def test_per_request_pipes_extend_the_clients_inside_them(
    make_client: Any, upstream: FakeUpstream
) -> None:
    log: list[str] = []
    client = make_client(pipes=[_recorder("client", log)])
    client.get(
        f"{upstream.url}/echo", pipes=[_recorder("req1", log), _recorder("req2", log)]
    ).close()
    assert log == ["client>", "req1>", "req2>", "<req2", "<req1", "<client"]
    log.clear()
    client.get(f"{upstream.url}/echo").close()  # the extension was for that request only
    assert log == ["client>", "<client"]


def test_a_pipe_can_short_circuit(make_client: Any, upstream: FakeUpstream) -> None:
    def cached(request: aifetch.Request) -> Any:
        if request.url.endswith("/cached"):
            return (yield Synthetic(b'{"from": "cache"}', status=203, headers={"X-Cache": "hit"}))
        return (yield Send(request))

    client = make_client(pipes=[portable(cached)])
    resp = client.get(f"{upstream.url}/cached")
    assert (resp.status, resp.status_text, resp.ok) == (203, "Non-Authoritative Information", True)
    assert resp.headers["x-cache"] == "hit"
    assert resp.json() == {"from": "cache"}
    assert upstream.requests == []
    assert client.get(f"{upstream.url}/echo").json()["path"] == "/echo"


def test_a_short_circuit_error_response_raises_like_a_real_one(make_client: Any) -> None:
    def deny(request: aifetch.Request) -> Any:
        return (yield Synthetic(b'{"error": {"message": "quota used up"}}', status=429))

    client = make_client(pipes=[portable(deny)])
    with pytest.raises(aifetch.RateLimitError, match="quota used up"):
        client.post("http://127.0.0.1:9/never", body=b"x")


def test_a_synthetic_streamed_body(make_client: Any) -> None:
    def stream(request: aifetch.Request) -> Any:
        return (yield Synthetic([b"one ", b"two ", b"three"]))

    resp = make_client(pipes=[portable(stream)]).get("http://127.0.0.1:9/x")
    assert list(resp.body) == [b"one ", b"two ", b"three"]


def test_a_pipe_can_call_next_twice(make_client: Any, upstream: FakeUpstream) -> None:
    def twice(request: aifetch.Request) -> Any:
        first = yield Send(request)
        yield Close(first)
        return (yield Send(request.replace(url=request.url + "?second=1")))

    upstream.enqueue(respond(200, b"first"), path="/twice")
    upstream.enqueue(respond(200, b"second"), path="/twice")
    resp = make_client(pipes=[portable(twice)]).get(f"{upstream.url}/twice")
    assert resp.text() == "second"
    assert [r.target for r in upstream.requests] == ["/twice", "/twice?second=1"]


def test_a_pipe_sees_errors_from_next(make_client: Any, upstream: FakeUpstream) -> None:
    seen: list[BaseException] = []

    def catch(request: aifetch.Request) -> Any:
        try:
            return (yield Send(request))
        except aifetch.HTTPError as exc:
            seen.append(exc)
            return (yield Synthetic(b"fallback"))

    upstream.enqueue(respond(500, b"boom"))
    client = make_client(pipes=[portable(catch), aifetch.pipes.raise_for_status()])
    assert client.get(f"{upstream.url}/x").text() == "fallback"
    assert isinstance(seen[0], aifetch.InternalServerError)


def test_a_pipe_can_wrap_the_body(make_client: Any, upstream: FakeUpstream) -> None:
    def upper(request: aifetch.Request) -> Any:
        response = yield Send(request)
        return (yield MapBody(response, bytes.upper))

    upstream.enqueue(respond(200, b"shout this", [("Content-Type", "text/plain")]))
    resp = make_client(pipes=[portable(upper)]).get(f"{upstream.url}/x")
    assert resp.headers["content-type"] == "text/plain"
    assert resp.text() == "SHOUT THIS"


def test_a_pipe_can_pass_values_in_extensions(make_client: Any, upstream: FakeUpstream) -> None:
    seen: list[Any] = []

    def outer(request: aifetch.Request) -> Any:
        request.extensions["tag"] = "from-outer"
        return (yield Send(request))

    def inner(request: aifetch.Request) -> Any:
        seen.append(request.extensions.get("tag"))
        return (yield Send(request))

    make_client(pipes=[portable(outer), portable(inner)]).get(f"{upstream.url}/echo").close()
    assert seen == ["from-outer"]


# --------------------------------------------------------------------------- built-ins


def test_builtin_base_url_headers_bearer_api_key(make_client: Any, upstream: FakeUpstream) -> None:
    client = make_client(
        pipes=[
            aifetch.pipes.base_url(f"{upstream.url}/echo/v1"),
            aifetch.pipes.headers({"X-Team": "ml", "X-Given": "pipe"}),
            aifetch.pipes.bearer("sk-test"),
            aifetch.pipes.api_key("api-key", "azure-key"),
        ]
    )
    client.get("/models", headers={"X-Given": "request"}).close()
    sent = upstream.requests[-1]
    assert sent.path == "/echo/v1/models"
    assert sent.header("authorization") == "Bearer sk-test"
    assert sent.header("api-key") == "azure-key"
    assert sent.header("x-team") == "ml"
    assert sent.header("x-given") == "request"  # the request's own header wins


def test_builtin_headers_override(make_client: Any, upstream: FakeUpstream) -> None:
    client = make_client(pipes=[aifetch.pipes.headers({"X-Given": "pipe"}, override=True)])
    client.get(f"{upstream.url}/echo", headers={"X-Given": "request"}).close()
    assert upstream.requests[-1].header_all("x-given") == ["pipe"]


def test_builtin_raise_for_status_raises_inside_the_chain(
    make_client: Any, upstream: FakeUpstream
) -> None:
    upstream.enqueue(respond(404, b"nope"))
    client = make_client(pipes=[aifetch.pipes.raise_for_status()], throw_http_errors=False)
    with pytest.raises(aifetch.NotFoundError):
        client.get(f"{upstream.url}/x")
