"""An upstream's ``proxy``, ``trust_env``, ``verify`` and ``cert``: a gateway reaching a
TLS upstream (certificate from a CA made at test time, client certificate required)
through a local forward proxy, and config errors that name the key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from aifetch.gateway import ConfigError, GatewayConfig, parse_config
from tests.gateway.conftest import RunningGateway
from tests.support.forward_proxy import ForwardProxy
from tests.support.tls_origin import Certificates, Origin

USER, PASSWORD = "gateway", "gw-proxy-S3cret!"
UPSTREAM_KEY = "sk-upstream-network-0000"

Serve = Callable[[GatewayConfig], RunningGateway]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def upstream(certs: Certificates) -> Iterator[Origin]:
    with Origin(certs.server_context(client_cert=True)) as origin:
        yield origin


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(credentials=(USER, PASSWORD)) as server:
        yield server


def _config(upstream: Origin, **network: Any) -> dict[str, Any]:
    return {
        "upstreams": {
            "secure": {
                "base_url": upstream.url + "/v1",
                "api_key": UPSTREAM_KEY,
                "timeout": {"connect": 5, "first_byte": 5, "idle": 5},
                **network,
            }
        },
        "models": {"gpt": {"targets": [{"upstream": "secure"}], "retry": {"attempts": 1}}},
        "server": {"heartbeat": 0, "shutdown_grace": 1},
    }


def _call(gateway: RunningGateway) -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )


def test_an_upstream_through_a_proxy_with_its_own_ca_and_client_certificate(
    serve: Serve, upstream: Origin, certs: Certificates, proxy: ForwardProxy
) -> None:
    config = _config(
        upstream,
        proxy=proxy.url_with(USER, PASSWORD),
        verify=str(certs.ca_file),
        cert=[str(certs.client_cert), str(certs.client_key)],
    )
    gateway = serve(parse_config(config))
    answer = _call(gateway)
    assert answer.status_code == 200, answer.text
    seen = answer.json()  # the upstream's description of what reached it
    assert seen["path"] == "/v1/chat/completions"
    assert seen["client_cert"] == "client.example.org"
    # The key reached the upstream, and the gateway scrubbed its echo from the answer.
    assert upstream.records[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert seen["headers"]["authorization"] == "Bearer [redacted]"
    assert "proxy-authorization" not in seen["headers"]
    [record] = proxy.records
    assert (record.method, record.target) == ("CONNECT", f"127.0.0.1:{upstream.port}")
    assert record.authorization is not None  # the proxy's credentials, to the proxy only


def test_trust_env_sends_an_upstream_through_the_environments_proxy(
    serve: Serve,
    upstream: Origin,
    certs: Certificates,
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url_with(USER, PASSWORD))
    tls = {"verify": str(certs.ca_file), "cert": str(certs.client_pem)}
    direct = serve(parse_config(_config(upstream, **tls)))
    assert _call(direct).status_code == 200
    assert proxy.records == []  # trust_env is off by default
    via_env = serve(parse_config(_config(upstream, trust_env=True, **tls)))
    assert _call(via_env).status_code == 200
    assert [r.method for r in proxy.records] == ["CONNECT"]


def test_an_upstream_certificate_from_an_unknown_ca_is_refused(
    serve: Serve, upstream: Origin
) -> None:
    gateway = serve(parse_config(_config(upstream)))
    answer = _call(gateway)
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_unreachable"


BAD = [
    ({"proxy": "ftp://127.0.0.1:21"}, "upstreams.secure.proxy: expected an http:// or https://"),
    (
        {"proxy": f"http://{USER}:{quote(PASSWORD)}@127.0.0.1:3128/x"},
        "upstreams.secure.proxy: a proxy URL has no path",
    ),
    ({"verify": "/nowhere/ca.pem"}, "upstreams.secure.verify: cannot use the CA bundle"),
    ({"cert": "/nowhere/client.pem"}, "upstreams.secure.cert: cannot load the client cert"),
    ({"cert": ["a.pem"]}, "upstreams.secure.cert: expected a PEM path, or [certificate, key]"),
    ({"verify": 3}, "upstreams.secure.verify: Expected `bool | str`, got `int`"),
]


@pytest.mark.parametrize(("network", "message"), BAD)
def test_a_bad_network_setting_is_a_config_error_naming_the_key(
    upstream: Origin, network: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_config(upstream, **network))
    assert str(info.value).startswith(message), str(info.value)
    assert PASSWORD not in str(info.value)
    assert quote(PASSWORD) not in str(info.value)


def test_a_bad_proxy_variable_is_a_config_error_for_an_upstream_that_trusts_it(
    upstream: Origin, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://{USER}:{quote(PASSWORD)}@proxy.corp:3128/x")
    parse_config(_config(upstream))  # not read without trust_env
    with pytest.raises(ConfigError, match=r"^upstreams\.secure\.trust_env: the https_proxy"):
        parse_config(_config(upstream, trust_env=True))
