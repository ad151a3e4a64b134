"""One configured upstream: its client, its request headers and the secrets to scrub.

One ``aifetch.AsyncClient`` per upstream (its own pool, timeouts and key). Upstream URLs
come only from config: the caller supplies a body, never a host, path or header that
reaches the upstream.
"""

from __future__ import annotations

from typing import Any

import aifetch

from ._config import UpstreamConfig
from ._mock import mock_pipe

__all__ = ["Upstream"]


class Upstream:
    def __init__(self, name: str, config: UpstreamConfig) -> None:
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
        )
        secrets = [config.api_key or "", *config.headers.values()]
        self.secrets = tuple(s.encode() for s in secrets if len(s) >= 6)

    def url(self, path: str) -> str:
        """The URL of ``path`` under ``base_url``. One string per path, kept: the client's
        URL caches then find it by a hash computed once."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self.base + path
        return url

    def scrub(self, data: bytes) -> bytes:
        """``data`` with any of this upstream's secrets replaced."""
        for secret in self.secrets:
            if data.find(secret) >= 0:
                data = data.replace(secret, b"[redacted]")
        return data

    async def aclose(self) -> None:
        await self.client.aclose()
