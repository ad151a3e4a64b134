"""One configured upstream: its client, its request headers and the secrets to scrub.

One ``aifetch.AsyncClient`` per upstream (its own pool, timeouts and key). Upstream URLs
come only from config: the caller supplies a body, never a host, path or header that
reaches the upstream.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aifetch

from ._config import GatewayConfig, UpstreamConfig, client_cert
from ._mock import mock_pipe
from ._secrets import Secrets
from ._slots import Slots

__all__ = ["Upstream", "answer_headers", "configured_secrets"]


def configured_secrets(config: GatewayConfig) -> Secrets:
    """Every upstream key, header value and proxy password in ``config``, the metrics and
    admin keys, and the secret virtual keys are hashed with: none may reach a caller."""
    values: list[str] = []
    for upstream in config.upstreams.values():
        if upstream.api_key:
            values.append(upstream.api_key)
        values.extend(upstream.headers.values())
        password = urlsplit(upstream.proxy).password if upstream.proxy else None
        if password:  # an echoing proxy must not hand its password to a caller either
            values.append(password)
    if config.server.metrics_key:
        values.append(config.server.metrics_key)
    if config.admin is not None and config.admin.key:
        values.append(config.admin.key)
    if config.keys is not None and config.keys.secret:
        values.append(config.keys.secret)
    return Secrets(values)


class Upstream:
    def __init__(self, name: str, config: UpstreamConfig, secrets: Secrets, shared: bool) -> None:
        """``shared``: several callers use the gateway, so each gets a fair share of the
        connections by default."""
        self.name = name
        pipes: list[Any] = []
        if config.kind == "mock":
            pipes.append(mock_pipe(config.mock))
            self.base = "http://mock.invalid"
        else:
            self.base = (config.base_url or "").rstrip("/")
        # Every call sends the same headers: built once here and copied as they are per
        # request (a bearer pipe would merge them again on every call).
        headers = aifetch.Headers({"content-type": "application/json"})
        for header, value in config.headers.items():
            if header.lower() != "content-type":
                headers.append(header, value)
        if config.api_key and config.kind != "mock" and "authorization" not in headers:
            headers.append("authorization", f"Bearer {config.api_key}")
        self.headers = headers
        self._urls: dict[str, str] = {}
        t = config.timeout
        self.client = aifetch.AsyncClient(
            pipes=pipes,
            timeout=aifetch.Timeout(
                connect=t.connect, first_byte=t.first_byte, idle=t.idle, total=t.total
            ),
            throw_http_errors=False,
            # A redirect would let the upstream send the gateway (and its key) to another
            # host; upstream hosts come only from config.
            redirect="error",
            max_connections=config.max_connections,
            proxy=config.proxy,
            trust_env=config.trust_env,
            verify=config.verify,
            cert=client_cert(config),
        )
        self.secrets = secrets
        size = config.max_connections
        share = config.max_connections_per_caller or (max(1, size // 2) if shared else size)
        self.slots = Slots(size, share)
        self.pool_wait = config.timeout.pool

    def url(self, path: str) -> str:
        """The URL of ``path`` under ``base_url``. One string per path, kept: the client's
        URL caches then find it by a hash computed once."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self.base + path
        return url

    async def aclose(self) -> None:
        await self.client.aclose()


def answer_headers(resp: aifetch.AsyncResponse, ctype: str) -> list[tuple[str, str]]:
    """The upstream headers a successful answer carries to the caller: its type, and the
    upstream's request id (what a support ticket asks for)."""
    request_id = resp.headers.get("x-request-id")
    if request_id is None:
        return [("content-type", ctype)]
    return [("content-type", ctype), ("x-request-id", request_id)]
