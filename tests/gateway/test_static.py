"""The browser files the gateway serves: /aifetch.js, /aifetch.d.ts and the playground."""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.resources import files

import httpx
import pytest

from aifetch.gateway import GatewayConfig
from aifetch.gateway._server import startup_line
from aifetch.gateway._static import STATIC_PATHS, static_response
from tests.gateway.conftest import RunningGateway, config_for

SOURCE = files("aifetch") / "js"


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((v for k, v in headers if k == name), None)


@pytest.mark.parametrize(
    ("path", "file", "content_type"),
    [
        ("/aifetch.js", "aifetch.js", b"text/javascript; charset=utf-8"),
        ("/aifetch.d.ts", "aifetch.d.ts", b"text/plain; charset=utf-8"),
        ("/playground", "playground.html", b"text/html; charset=utf-8"),
        ("/playground.js", "playground.js", b"text/javascript; charset=utf-8"),
        ("/playground.css", "playground.css", b"text/css; charset=utf-8"),
    ],
)
def test_each_file_is_served_whole_with_its_type(path: str, file: str, content_type: bytes) -> None:
    answer = static_response(path, None)
    assert answer is not None
    assert answer.status == 200
    assert answer.body == (SOURCE / file).read_bytes()
    assert header(answer.headers, b"content-type") == content_type
    assert header(answer.headers, b"content-length") == str(len(answer.body)).encode()
    assert header(answer.headers, b"cache-control") == b"no-cache"
    assert header(answer.headers, b"x-content-type-options") == b"nosniff"


def test_the_etag_is_strong_stable_and_differs_per_file() -> None:
    tags = set()
    for path in STATIC_PATHS:
        first, again = static_response(path, None), static_response(path, None)
        assert first is not None
        assert again is not None
        etag = header(first.headers, b"etag")
        assert etag is not None
        assert etag == header(again.headers, b"etag")
        assert etag.startswith(b'"')
        assert etag.endswith(b'"')  # strong: no W/ prefix
        tags.add(etag)
    assert len(tags) == len(STATIC_PATHS)


@pytest.mark.parametrize("form", ["{tag}", "W/{tag}", '"other", {tag}', "*"])
def test_a_matching_if_none_match_gets_304_without_a_body(form: str) -> None:
    full = static_response("/aifetch.js", None)
    assert full is not None
    etag = header(full.headers, b"etag")
    assert etag is not None
    answer = static_response("/aifetch.js", form.format(tag=etag.decode()).encode())
    assert answer is not None
    assert (answer.status, answer.body) == (304, b"")
    assert header(answer.headers, b"etag") == etag
    assert header(answer.headers, b"cache-control") == b"no-cache"


def test_a_stale_if_none_match_gets_the_file() -> None:
    answer = static_response("/aifetch.js", b'"not-the-tag"')
    assert answer is not None
    assert answer.status == 200


def test_only_the_page_carries_the_content_security_policy() -> None:
    page = static_response("/playground", None)
    script = static_response("/aifetch.js", None)
    assert page is not None
    assert script is not None
    csp = header(page.headers, b"content-security-policy")
    assert csp is not None
    assert b"script-src 'self'" in csp
    assert b"connect-src 'self'" in csp
    assert b"default-src 'none'" in csp
    assert b"unsafe-inline" not in csp
    assert header(page.headers, b"referrer-policy") == b"no-referrer"
    assert header(script.headers, b"content-security-policy") is None


def test_the_page_runs_no_inline_script() -> None:
    # The CSP allows 'self' only, so an inline script would be blocked: there must be none.
    html = (SOURCE / "playground.html").read_text()
    assert html.count("<script") == 1
    assert '<script type="module" src="playground.js"></script>' in html


def test_with_the_playground_off_only_the_module_is_served() -> None:
    for path in ("/playground", "/playground.js", "/playground.css"):
        assert static_response(path, None, playground=False) is None
    assert static_response("/aifetch.js", None, playground=False) is not None
    assert static_response("/nothing", None) is None


def test_the_startup_line_gives_the_playground_url_when_it_is_on() -> None:
    on = startup_line(config_for(), "127.0.0.1", 8000)
    assert on.endswith("; playground: http://127.0.0.1:8000/playground")
    off = startup_line(config_for(server={"playground": False}), "127.0.0.1", 8000)
    assert "playground" not in off


def test_served_over_http_with_cors_and_revalidation(
    serve: Callable[[GatewayConfig], RunningGateway],
) -> None:
    origin = "http://app.example"
    gateway = serve(config_for(cors={"allow_origins": [origin]}))
    first = httpx.get(f"{gateway.url}/aifetch.js", headers={"origin": origin})
    assert first.status_code == 200
    assert first.headers["content-type"] == "text/javascript; charset=utf-8"
    assert first.headers["access-control-allow-origin"] == origin
    assert first.content == (SOURCE / "aifetch.js").read_bytes()
    again = httpx.get(f"{gateway.url}/aifetch.js", headers={"if-none-match": first.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")
    assert httpx.get(f"{gateway.url}/playground").headers["content-type"].startswith("text/html")
    wrong = httpx.post(f"{gateway.url}/aifetch.js")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "method_not_allowed")


def test_switched_off_over_http(serve: Callable[[GatewayConfig], RunningGateway]) -> None:
    gateway = serve(config_for(server={"playground": False}))
    page = httpx.get(f"{gateway.url}/playground")
    assert (page.status_code, page.json()["error"]["code"]) == (404, "unknown_url")
    assert httpx.get(f"{gateway.url}/aifetch.js").status_code == 200


def test_the_type_declarations_name_every_export() -> None:
    script = (SOURCE / "aifetch.js").read_text()
    types = (SOURCE / "aifetch.d.ts").read_text()
    exported = set(re.findall(r"^export (?:async )?(?:function\*?|class) (\w+)", script, re.M))
    declared = set(re.findall(r"^export (?:function|class) (\w+)", types, re.M))
    assert exported == declared
    assert "export default aifetch;" in script
    assert "export default aifetch;" in types
