"""Typed HTTP errors, their messages and provider fields, and secrets kept out of both."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import aifetch
from tests.support.fake_upstream import FakeUpstream, reset_before_headers, respond

STATUS_CLASSES = [
    (400, aifetch.BadRequestError),
    (401, aifetch.AuthenticationError),
    (403, aifetch.PermissionDeniedError),
    (404, aifetch.NotFoundError),
    (409, aifetch.ConflictError),
    (422, aifetch.UnprocessableEntityError),
    (429, aifetch.RateLimitError),
    (500, aifetch.InternalServerError),
    (502, aifetch.InternalServerError),
    (503, aifetch.InternalServerError),
    (418, aifetch.HTTPError),
]

SECRETS = (
    "sk-live-SECRET1",
    "AZURE-SECRET2",
    "X-API-SECRET3",
    "QUERYKEY4",
    "QUERYAPIKEY5",
    "QUERYTOKEN6",
)


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
def test_each_status_raises_its_class(
    client: Any, upstream: FakeUpstream, status: int, cls: type
) -> None:
    upstream.enqueue(respond(status, {"error": {"message": "nope"}}))
    with pytest.raises(cls) as info:
        client.get(f"{upstream.url}/x")
    err = info.value
    assert type(err) is cls
    assert isinstance(err, aifetch.HTTPError)
    assert err.status == status
    assert err.message == "nope"
    assert err.response.status == status
    assert err.request.method == "GET"


def test_message_format(client: Any, upstream: FakeUpstream) -> None:
    body = {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}}
    upstream.enqueue(respond(429, body))
    url = f"{upstream.url}/v1/chat/completions"
    with pytest.raises(aifetch.RateLimitError) as info:
        client.post(url, json={"model": "m"})
    assert (
        str(info.value)
        == f"429 Too Many Requests: POST {url} — Rate limit reached (code=rate_limit_exceeded)"
    )


def test_openai_error_shape_is_parsed(client: Any, upstream: FakeUpstream) -> None:
    body = {
        "error": {
            "message": "Invalid value for 'temperature'",
            "type": "invalid_request_error",
            "code": "invalid_value",
            "param": "temperature",
        }
    }
    upstream.enqueue(respond(400, body, headers={"x-request-id": "req_123"}))
    with pytest.raises(aifetch.BadRequestError) as info:
        client.post(f"{upstream.url}/v1/x", json={})
    err = info.value
    assert (err.message, err.type, err.code, err.param) == (
        "Invalid value for 'temperature'",
        "invalid_request_error",
        "invalid_value",
        "temperature",
    )
    assert err.body == body
    assert err.request_id == "req_123"
    assert str(err).endswith(
        "— Invalid value for 'temperature' "
        "(type=invalid_request_error, code=invalid_value, param=temperature)"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": "plain text error"}, "plain text error"),
        ({"message": "top-level message"}, "top-level message"),
        ({"detail": "Not authenticated"}, "Not authenticated"),
        (b"upstream exploded\n  badly", "upstream exploded badly"),
    ],
)
def test_common_error_body_variants(
    client: Any, upstream: FakeUpstream, body: Any, message: str
) -> None:
    upstream.enqueue(respond(500, body))
    with pytest.raises(aifetch.InternalServerError) as info:
        client.get(f"{upstream.url}/x")
    assert info.value.message == message
    assert message in str(info.value)


def test_retry_after_is_on_the_error(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(
        respond(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "7"})
    )
    with pytest.raises(aifetch.RateLimitError) as info:
        client.get(f"{upstream.url}/x")
    assert info.value.retry_after == 7.0


def test_retry_after_ms_is_on_the_error(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(respond(503, b"", headers={"retry-after-ms": "1500"}))
    with pytest.raises(aifetch.InternalServerError) as info:
        client.get(f"{upstream.url}/x")
    assert info.value.retry_after == 1.5


def test_error_body_is_bounded_at_one_mib(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(respond(500, b"x" * ((1 << 20) + 1), headers={"Content-Type": "text/plain"}))
    with pytest.raises(aifetch.InternalServerError) as info:
        client.get(f"{upstream.url}/x")
    assert info.value.body is None
    assert "over 1 MiB" in str(info.value)


def test_error_body_just_under_the_bound_is_read(client: Any, upstream: FakeUpstream) -> None:
    text = "e" * ((1 << 20) - 100)
    upstream.enqueue(respond(500, {"error": {"message": text}}))
    with pytest.raises(aifetch.InternalServerError) as info:
        client.get(f"{upstream.url}/x")
    assert info.value.message == text


def test_throw_http_errors_off_returns_the_response_unread(
    client: Any, upstream: FakeUpstream
) -> None:
    upstream.enqueue(respond(404, {"error": {"message": "gone"}}))
    resp = client.get(f"{upstream.url}/x", throw_http_errors=False)
    assert resp.status == 404
    assert resp.ok is False
    assert resp.body_used is False
    assert resp.json() == {"error": {"message": "gone"}}


def test_throw_http_errors_off_as_a_client_option(make_client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(respond(500, b"boom"), times=2)
    resp = make_client(throw_http_errors=False).get(f"{upstream.url}/x")
    assert (resp.status, resp.text()) == (500, "boom")
    with pytest.raises(aifetch.InternalServerError):
        make_client(throw_http_errors=False).get(f"{upstream.url}/x", throw_http_errors=True)


def test_raise_for_status_on_a_returned_response(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(respond(409, {"error": {"message": "conflict!"}}))
    resp = client.get(f"{upstream.url}/x", throw_http_errors=False)
    with pytest.raises(aifetch.ConflictError, match="conflict!"):
        resp.raise_for_status()


def _secret_request(client: Any, url: str) -> Any:
    return client.get(
        f"{url}?key=QUERYKEY4&api_key=QUERYAPIKEY5&token=QUERYTOKEN6&model=m",
        headers={
            "Authorization": "Bearer sk-live-SECRET1",
            "api-key": "AZURE-SECRET2",
            "x-api-key": "X-API-SECRET3",
        },
    )


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked into {text!r}"


def test_secrets_never_in_http_error_messages_or_reprs(client: Any, upstream: FakeUpstream) -> None:
    upstream.enqueue(respond(401, {"error": {"message": "bad key"}}))
    with pytest.raises(aifetch.AuthenticationError) as info:
        _secret_request(client, f"{upstream.url}/v1/models")
    err = info.value
    sent = upstream.requests[0]
    assert sent.header("authorization") == "Bearer sk-live-SECRET1"  # it was really sent
    assert "model=m" in str(err)
    _assert_no_secret(
        str(err),
        repr(err),
        repr(err.request),
        repr(err.response),
        repr(err.request.headers),
        repr(err.response.headers),
    )


def test_secrets_never_in_network_errors(
    client: Any, upstream: FakeUpstream, refused_url: str
) -> None:
    with pytest.raises(aifetch.NetworkError) as info:
        _secret_request(client, f"{refused_url}/v1/models")
    _assert_no_secret(str(info.value), repr(info.value))
    upstream.enqueue(reset_before_headers())
    with pytest.raises(aifetch.NetworkError) as info:
        _secret_request(client, f"{upstream.url}/v1/models")
    _assert_no_secret(str(info.value), repr(info.value))


def test_secrets_never_in_log_lines(
    make_client: Any, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("aifetch.test")
    client = make_client(pipes=[aifetch.pipes.log(logger), aifetch.pipes.bearer("sk-live-SECRET1")])
    upstream.enqueue(respond(403, b"no"))
    with (
        caplog.at_level(logging.INFO, logger="aifetch.test"),
        pytest.raises(aifetch.PermissionDeniedError),
    ):
        _secret_request(client, f"{upstream.url}/v1/models")
    with caplog.at_level(logging.INFO, logger="aifetch.test"):
        _secret_request(client, f"{upstream.url}/echo").close()
    assert len(caplog.records) == 2
    for record in caplog.records:
        _assert_no_secret(record.getMessage(), repr(record.__dict__))
    assert "403" in caplog.records[0].getMessage()
    assert caplog.records[1].aifetch["status"] == 200  # type: ignore[attr-defined]


def test_secrets_never_in_pipe_reprs() -> None:
    _assert_no_secret(
        repr(aifetch.pipes.bearer("sk-live-SECRET1")),
        repr(aifetch.pipes.api_key("api-key", "AZURE-SECRET2")),
    )
