"""Which proxy a request goes through (``aifetch._proxy``): no I/O, the environment in,
a proxy or none out."""

from __future__ import annotations

import base64

import pytest

from aifetch._proxy import ProxyRoutes, parse_proxy

_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_credentials_leave_the_url_and_become_a_basic_header() -> None:
    proxy = parse_proxy("http://me%40corp:p%3Ass@proxy.corp:3128/")
    assert proxy.url == "http://proxy.corp:3128"
    assert proxy.authorization == "Basic " + base64.b64encode(b"me@corp:p:ss").decode()
    assert "p:ss" in proxy.secrets
    assert "p%3Ass" in proxy.secrets
    assert "p:ss" not in repr(proxy)
    assert parse_proxy("proxy.corp:8080").url == "http://proxy.corp:8080"
    assert parse_proxy("http://[::1]:3128").url == "http://[::1]:3128"


NO_PROXY_CASES = [
    # (NO_PROXY, URL, proxied)
    ("example.org", "https://example.org/v1", False),
    ("example.org", "https://api.example.org/v1", False),
    (".example.org", "https://api.example.org/v1", False),
    ("example.org", "https://notexample.org/v1", True),
    ("example.org:443", "https://example.org/v1", False),
    ("example.org:8443", "https://example.org/v1", True),
    ("example.org:8443", "https://example.org:8443/v1", False),
    ("127.0.0.1", "http://127.0.0.1:8000/v1", False),
    ("[::1]", "http://[::1]:8000/v1", False),
    ("::1", "http://[::1]:8000/v1", False),
    ("*", "https://anything.test/", False),
    (" a.test , ,B.TEST ", "https://b.test/", False),
    ("", "https://b.test/", True),
]


@pytest.mark.parametrize(("no_proxy", "url", "proxied"), NO_PROXY_CASES)
def test_no_proxy(no_proxy: str, url: str, proxied: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3129")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    routes = ProxyRoutes(None, trust_env=True)
    chosen = routes.for_url(url)
    assert (chosen is not None) == proxied
    if chosen is not None:
        assert chosen.url.endswith("3129" if url.startswith("https") else "3128")


def test_all_proxy_is_the_fallback_and_an_explicit_proxy_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALL_PROXY", "http://all.corp:1080")
    monkeypatch.setenv("NO_PROXY", "*")
    routes = ProxyRoutes(None, trust_env=True)
    assert routes.for_url("https://x.test/") is None
    monkeypatch.delenv("NO_PROXY")
    chosen = ProxyRoutes(None, trust_env=True).for_url("https://x.test/")
    assert chosen is not None
    assert chosen.url == "http://all.corp:1080"
    # An explicit proxy is used for every request, whatever the environment says.
    fixed = ProxyRoutes("http://fixed.corp:3128", trust_env=True)
    assert fixed.for_url("https://x.test/").url == "http://fixed.corp:3128"  # type: ignore[union-attr]
    # Without trust_env the environment is not read at all.
    assert not ProxyRoutes(None, trust_env=False).active


def test_a_bad_proxy_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://u:secret-pw@proxy.corp:3128/some/path")
    with pytest.raises(ValueError, match="the https_proxy variable") as info:
        ProxyRoutes(None, trust_env=True)
    assert "secret-pw" not in str(info.value)
