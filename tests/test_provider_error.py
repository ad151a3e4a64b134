from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest

from aifetch._provider_error import (
    REQUEST_ID_HEADERS,
    ProviderError,
    parse_error_body,
    provider_error_from_json,
    request_id_from,
)

PE = ProviderError


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        # OpenAI.
        (
            {
                "error": {
                    "message": "Incorrect API key provided",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                    "param": None,
                }
            },
            PE("Incorrect API key provided", "invalid_request_error", "invalid_api_key", None),
        ),
        (
            {"error": {"message": "bad", "type": "invalid_request_error", "param": "messages"}},
            PE("bad", "invalid_request_error", None, "messages"),
        ),
        # Anthropic.
        (
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            PE("Overloaded", "overloaded_error"),
        ),
        # Google, bare and in the list wrapper; int code becomes text.
        (
            {"error": {"code": 429, "message": "Quota", "status": "RESOURCE_EXHAUSTED"}},
            PE("Quota", "RESOURCE_EXHAUSTED", "429"),
        ),
        (
            [{"error": {"code": 400, "message": "Invalid", "status": "INVALID_ARGUMENT"}}],
            PE("Invalid", "INVALID_ARGUMENT", "400"),
        ),
        # Azure: int "status" is not a type name; an explicit type wins over status.
        (
            {"error": {"message": "filtered", "code": "content_filter", "status": 400}},
            PE("filtered", None, "content_filter"),
        ),
        (
            {"error": {"message": "m", "type": "t", "status": "S"}},
            PE("m", "t"),
        ),
        # {"error": "text"}.
        ({"error": "model not found"}, PE("model not found")),
        ({"error": "boom", "type": "server_error"}, PE("boom", "server_error")),
        # Top-level message.
        ({"message": "Too many requests"}, PE("Too many requests")),
        (
            {"message": "m", "type": "t", "code": 42, "param": "p"},
            PE("m", "t", "42", "p"),
        ),
        ({"error": {}, "message": "fallback"}, PE("fallback")),
        ({"error": None, "message": "fallback"}, PE("fallback")),
        ({"error": True, "message": "fallback"}, PE("fallback")),
        # FastAPI / Starlette detail.
        ({"detail": "Not authenticated"}, PE("Not authenticated")),
        (
            {
                "detail": [
                    {
                        "loc": ["body", "messages", 0, "content"],
                        "msg": "Field required",
                        "type": "missing",
                    },
                    {"loc": ["body", "model"], "msg": "Input should be a string", "type": "x"},
                ]
            },
            PE("Field required; Input should be a string", "missing", None, "messages[0].content"),
        ),
        (
            {"detail": [{"loc": ["query", "limit"], "msg": "too big", "type": "less_than"}]},
            PE("too big", "less_than", None, "limit"),
        ),
        ({"detail": [{"loc": ["body"], "msg": "bad json"}]}, PE("bad json", None, None, "body")),
        ({"detail": [{"loc": [0, "x"], "msg": "m"}]}, PE("m", None, None, "[0].x")),
        ({"detail": [{"loc": [], "msg": "m"}]}, PE("m")),
        ({"detail": [{"loc": "body", "msg": "m"}]}, PE("m")),
        ({"detail": ["plain", "strings"]}, PE("plain; strings")),
        ({"detail": {"message": "nested"}}, PE("nested")),
        ({"detail": 404}, PE("404")),
        # Values converted sensibly.
        ({"message": 12.5}, PE("12.5")),
        ({"message": True}, PE("true")),
        ({"message": {"a": [1, 2]}}, PE('{"a":[1,2]}')),
        ({"message": "", "code": "c"}, PE(None, None, "c")),
        ({"error": {"message": "m", "code": 10**5000}}, PE("m")),  # too long to print
        # Unrecognised.
        ({}, None),
        ({"error": {}}, None),
        ({"message": None}, None),
        ({"message": ""}, None),
        ({"detail": []}, None),
        ({"detail": None}, None),
        ({"foo": "bar"}, None),
        ([], None),
        ([1, 2], None),
        ([[{"error": "too deep"}]], None),
        ("a string", None),
        (42, None),
        (None, None),
    ],
)
def test_provider_error_from_json(obj: object, expected: ProviderError | None) -> None:
    assert provider_error_from_json(obj) == expected


def test_provider_error_is_frozen_and_defaults_to_none() -> None:
    err = PE()
    assert (err.message, err.type, err.code, err.param) == (None, None, None, None)
    with pytest.raises(AttributeError):
        err.message = "x"  # type: ignore[misc]
    assert PE(message="a") == PE("a")
    assert hash(PE("a")) == hash(PE("a"))


@pytest.mark.parametrize(
    ("body", "content_type", "parsed", "expected"),
    [
        (
            b'{"error": {"message": "slow down", "type": "rate_limit"}}',
            "application/json",
            {"error": {"message": "slow down", "type": "rate_limit"}},
            PE("slow down", "rate_limit"),
        ),
        # JSON under a lying content type, and with a BOM.
        (b'{"message": "m"}', "text/html", {"message": "m"}, PE("m")),
        (b'\xef\xbb\xbf{"message": "m"}', None, {"message": "m"}, PE("m")),
        (b'  \n{"detail": "x"}\n', "text/plain", {"detail": "x"}, PE("x")),
        # JSON with no recognisable error.
        (b"[1, 2]", "application/json", [1, 2], None),
        (b"null", "application/json", None, None),
        (b"429", None, 429, None),
        (b'"quota   exceeded\\n"', None, "quota   exceeded\n", PE("quota exceeded")),
        # Text.
        (
            b"<html><body>\n  <h1>502 Bad Gateway</h1>\n</body></html>",
            "text/html",
            "<html><body>\n  <h1>502 Bad Gateway</h1>\n</body></html>",
            PE("<html><body> <h1>502 Bad Gateway</h1> </body></html>"),
        ),
        (
            b"upstream connect error",
            "application/json",
            "upstream connect error",
            PE("upstream connect error"),
        ),
        (b"", None, "", None),
        (b" \r\n\t ", None, " \r\n\t ", None),
        (b"\xef\xbb\xbf", None, "", None),
        (b"caf\xc3\xa9 \xff", None, "café \ufffd", PE("café \ufffd")),
        (b'{"message": "oops', None, '{"message": "oops', PE('{"message": "oops')),
        (b"{'single': 1}", None, "{'single': 1}", PE("{'single': 1}")),
    ],
)
def test_parse_error_body(
    body: bytes, content_type: str | None, parsed: object, expected: ProviderError | None
) -> None:
    got_parsed, got_error = parse_error_body(body, content_type)
    assert got_parsed == parsed
    assert got_error == expected


def test_parse_error_body_caps_a_text_message_at_500_chars() -> None:
    body = ("word \n\n\t " * 400).encode()
    parsed, err = parse_error_body(body, "text/plain")
    assert parsed == body.decode()
    assert err is not None
    assert err.message is not None
    assert len(err.message) == 500
    assert err.message.startswith("word word ")
    assert "\n" not in err.message


def test_parse_error_body_survives_deep_nesting_and_huge_numbers() -> None:
    deep = b"[" * 100_000
    parsed, err = parse_error_body(deep, "application/json")
    assert parsed == deep.decode()
    assert err == PE(deep.decode()[:500])
    huge = b'{"error": {"code": ' + b"9" * 5000 + b"}}"
    parsed, err = parse_error_body(huge, "application/json")
    assert parsed == huge.decode()
    assert err is not None
    assert err.message is not None
    assert err.message.startswith('{"error": {"code": 999')


def test_parse_error_body_round_trips_encoded_errors() -> None:
    obj = {"error": {"message": "é ✓", "type": "t", "code": "c", "param": "p"}}
    parsed, err = parse_error_body(msgspec.json.encode(obj), "application/json")
    assert parsed == obj
    assert err == PE("é ✓", "t", "c", "p")


def headers(values: dict[str, str]) -> Callable[[str], str | None]:
    return values.get


@pytest.mark.parametrize(
    ("hdrs", "expected"),
    [
        ({}, None),
        ({"x-request-id": "req_123"}, "req_123"),
        ({"request-id": "req_a", "cf-ray": "8abc-SJC"}, "req_a"),
        ({"x-request-id": "req_1", "request-id": "req_2"}, "req_1"),
        ({"x-amzn-requestid": "uuid-1"}, "uuid-1"),
        ({"cf-ray": "8abc-SJC"}, "8abc-SJC"),
        ({"x-request-id": "", "request-id": "req_2"}, "req_2"),
        ({"x-request-id": "  ", "cf-ray": "r"}, "r"),
        ({"x-request-id": "  req_1 "}, "req_1"),
        ({"x-request-id": "r" * 1000}, "r" * 256),
        ({"other": "x"}, None),
    ],
)
def test_request_id_from(hdrs: dict[str, str], expected: str | None) -> None:
    assert request_id_from(headers(hdrs)) == expected


def test_request_id_headers_are_lower_case() -> None:
    assert all(name == name.lower() for name in REQUEST_ID_HEADERS)
