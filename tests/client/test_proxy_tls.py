"""``proxy=``, ``trust_env=``, ``verify=`` and ``cert=`` on both clients, against a local
forward proxy (absolute-form for http targets, CONNECT tunnels for https) and a TLS origin
whose certificate comes from a CA made at test time. Proxy credentials reach the proxy
only, and never a message, a repr or a log line."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import aifetch
from tests.support.forward_proxy import ForwardProxy
from tests.support.tls_origin import Certificates, Origin

USER, PASSWORD = "team@corp", "pr0xy-S3cret:pw/1"
SECRETS = (
    PASSWORD,
    quote(PASSWORD, safe=""),
    base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
)
FLAVOURS = ["async", "lean", "sync"]  # lean: AsyncClient(transport="lean")
_ENV = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def plain() -> Iterator[Origin]:
    with Origin() as origin:
        yield origin


@pytest.fixture(scope="module")
def secure(certs: Certificates) -> Iterator[Origin]:
    with Origin(certs.server_context()) as origin:
        yield origin


@pytest.fixture(scope="module")
def mutual(certs: Certificates) -> Iterator[Origin]:
    """An origin that requires a client certificate signed by the test CA."""
    with Origin(certs.server_context(client_cert=True)) as origin:
        yield origin


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(credentials=(USER, PASSWORD)) as server:
        yield server


def get(flavour: str, url: str, **client: Any) -> dict[str, Any]:
    """GET ``url`` with a client made with ``client``; the JSON answer."""
    if flavour == "sync":
        with aifetch.Client(**client) as sync_client:
            answer: dict[str, Any] = sync_client.get(url).json()
            return answer

    if flavour == "lean":
        client["transport"] = "lean"

    async def run() -> dict[str, Any]:
        async with aifetch.AsyncClient(**client) as async_client:
            response = await async_client.get(url)
            data: dict[str, Any] = await response.json()
            return data

    return asyncio.run(run())


def failure(flavour: str, url: str, **client: Any) -> BaseException:
    with pytest.raises(aifetch.AifetchError) as info:
        get(flavour, url, **client)
    return info.value


# --- routing through the proxy -------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_an_http_target_is_sent_to_the_proxy_in_absolute_form(
    flavour: str, plain: Origin, proxy: ForwardProxy
) -> None:
    answer = get(flavour, plain.url + "/v1/models?x=1", proxy=proxy.url_with(USER, PASSWORD))
    assert answer["path"] == "/v1/models?x=1"
    [record] = proxy.records
    assert (record.method, record.target) == ("GET", plain.url + "/v1/models?x=1")
    assert record.authorization == f"Basic {SECRETS[2]}"
    # The credentials were for the proxy: the origin never saw them.
    assert "proxy-authorization" not in answer["headers"]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_an_https_target_goes_through_a_connect_tunnel(
    flavour: str, secure: Origin, certs: Certificates, proxy: ForwardProxy
) -> None:
    answer = get(
        flavour,
        secure.url + "/v1/models",
        proxy=proxy.url_with(USER, PASSWORD),
        verify=certs.ca_file,
    )
    assert answer["path"] == "/v1/models"
    [record] = proxy.records
    assert (record.method, record.target) == ("CONNECT", f"127.0.0.1:{secure.port}")
    assert record.authorization == f"Basic {SECRETS[2]}"
    assert "proxy-authorization" not in answer["headers"]


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("target", ["plain", "secure"])
def test_trust_env_routes_by_the_environment_and_no_proxy(
    flavour: str,
    target: str,
    request: pytest.FixtureRequest,
    certs: Certificates,
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    origin: Origin = request.getfixturevalue(target)
    url = origin.url + "/v1/models"
    via = proxy.url_with(USER, PASSWORD)
    monkeypatch.setenv("HTTP_PROXY" if target == "plain" else "https_proxy", via)
    tls = {"verify": certs.ca_file}
    # Ignored without trust_env.
    get(flavour, url, **tls)
    assert proxy.records == []
    for no_proxy, proxied in [
        (None, True),
        ("example.org, .corp.internal", True),
        (f"127.0.0.1:{origin.port + 1}", True),  # another port of the host
        ("127.0.0.1", False),
        (f"127.0.0.1:{origin.port}", False),
        ("*", False),
    ]:
        if no_proxy is None:
            monkeypatch.delenv("NO_PROXY", raising=False)
        else:
            monkeypatch.setenv("NO_PROXY", no_proxy)
        before = len(proxy.records)
        assert get(flavour, url, trust_env=True, **tls)["path"] == "/v1/models"
        assert len(proxy.records) == before + proxied, no_proxy


# --- TLS: what to trust, and the client certificate ----------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_verify_decides_what_certificate_is_trusted(
    flavour: str, secure: Origin, certs: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = secure.url + "/v1/models"
    refused = failure(flavour, url)  # the system's CAs do not know the test CA
    assert isinstance(refused, aifetch.NetworkError)
    assert refused.phase == "connect"
    assert "TLS certificate verify failed" in str(refused)
    assert get(flavour, url, verify=certs.ca_file)["path"] == "/v1/models"
    assert get(flavour, url, verify=str(certs.ca_file))["path"] == "/v1/models"
    assert get(flavour, url, verify=False)["path"] == "/v1/models"
    context = ssl.create_default_context(cafile=str(certs.ca_file))
    assert get(flavour, url, verify=context)["path"] == "/v1/models"
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_file))
    assert get(flavour, url, trust_env=True)["path"] == "/v1/models"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cert_presents_a_client_certificate(
    flavour: str, mutual: Origin, certs: Certificates, proxy: ForwardProxy
) -> None:
    url = mutual.url + "/v1/models"
    refused = failure(flavour, url, verify=certs.ca_file)
    assert isinstance(refused, aifetch.NetworkError)
    for cert in (certs.client_pem, (certs.client_cert, certs.client_key)):
        answer = get(flavour, url, verify=certs.ca_file, cert=cert)
        assert answer["client_cert"] == "client.example.org"
    # Through the proxy's tunnel as well.
    answer = get(
        flavour,
        url,
        verify=certs.ca_file,
        cert=certs.client_pem,
        proxy=proxy.url_with(USER, PASSWORD),
    )
    assert answer["client_cert"] == "client.example.org"
    assert proxy.records[-1].method == "CONNECT"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_tls_files_that_cannot_be_used_are_named(
    flavour: str, certs: Certificates, tmp_path: Path
) -> None:
    make = aifetch.Client if flavour == "sync" else aifetch.AsyncClient
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(ValueError, match=r"verify: cannot use the CA bundle '.*nowhere\.pem'"):
        make(verify=missing)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ValueError, match=r"cert: cannot load the client certificate '.*junk"):
        make(cert=junk)
    with pytest.raises(ValueError, match="load the client certificate into that context"):
        make(verify=ssl.create_default_context(), cert=certs.client_pem)
    with pytest.raises(TypeError, match="verify: expected a bool"):
        make(verify=3)  # type: ignore[arg-type]


# --- credentials never show ----------------------------------------------------------------


def _clean(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, text


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_proxy_credentials_never_appear_in_errors_or_logs(
    flavour: str,
    plain: Origin,
    secure: Origin,
    certs: Certificates,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    log_pipe = {"pipes": [aifetch.pipes.log(level=logging.DEBUG)]}
    wrong = ("someone", PASSWORD)
    with ForwardProxy(credentials=wrong) as strict:
        via = strict.url_with(USER, PASSWORD)  # the right user's password, the wrong user
        # An http target: the proxy's own 407 comes back as the response.
        refused = failure(flavour, plain.url + "/v1/x", proxy=via, **log_pipe)
        assert isinstance(refused, aifetch.HTTPError)
        assert refused.status == 407
        # An https target: the tunnel is refused before any response.
        tunnel = failure(flavour, secure.url + "/v1/x", proxy=via, verify=certs.ca_file)
        assert isinstance(tunnel, aifetch.NetworkError)
        assert "407" in str(tunnel)
        assert f"http://127.0.0.1:{strict.port}" in str(tunnel)
    # A proxy that is not there at all.
    gone = failure(flavour, secure.url + "/v1/x", proxy=via, verify=certs.ca_file)
    assert isinstance(gone, aifetch.NetworkError)
    assert gone.phase == "connect"
    logged = [r.getMessage() + repr(r.__dict__) for r in caplog.records]
    _clean(*(str(e) for e in (refused, tunnel, gone)), *(repr(e) for e in (refused, tunnel, gone)))
    _clean(*logged)


@pytest.mark.parametrize(
    ("proxy", "message"),
    [
        ("ftp://127.0.0.1:21", "expected an http:// or https:// URL"),
        ("http://", "expected an http:// or https:// URL with a host"),
        (f"http://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:3128/path", "no path or query"),
        ("http://127.0.0.1:99999", "is not a URL"),
    ],
)
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_proxy_that_is_not_a_proxy_url_is_refused(flavour: str, proxy: str, message: str) -> None:
    make = aifetch.Client if flavour == "sync" else aifetch.AsyncClient
    with pytest.raises(ValueError, match=message) as info:
        make(proxy=proxy)
    _clean(str(info.value))
