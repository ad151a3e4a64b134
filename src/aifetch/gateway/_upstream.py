"""One configured upstream: its client, its request headers and the secrets to scrub.

One ``aifetch.AsyncClient`` per upstream (its own pool, timeouts and key). Upstream URLs
come only from config: the caller supplies a body, never a host, path or header that
reaches the upstream. The key goes where the upstream's kind wants it: ``Authorization:
Bearer`` (openai), ``x-api-key`` (anthropic) or ``x-goog-api-key`` (gemini: never in the
URL, where access logs would keep it).
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable
from typing import Any, Protocol
from urllib.parse import urlsplit

import aifetch
from aifetch._retry_timing import DEFAULT_RETRY_STATUSES
from aifetch.providers import dialect as dialect_of

from ._config import GatewayConfig, UpstreamConfig, client_cert
from ._mock import mock_pipe
from ._secrets import Secrets
from ._slots import Slots

__all__ = [
    "TRANSLATED_KINDS",
    "Fetcher",
    "Upstream",
    "answer_headers",
    "configured_secrets",
]

# The kinds spoken through a dialect of aifetch.providers (docs/DIALECTS.md).
TRANSLATED_KINDS = frozenset({"anthropic", "gemini"})


class Fetcher(Protocol):
    """What a call needs of an upstream's client: ``aifetch.AsyncClient``, or a wrapper of
    it for one translated call (``_kinds``)."""

    def fetch(
        self,
        resource: str,
        *,
        method: str = ...,
        headers: aifetch.Headers | None = ...,
        body: bytes | None = ...,
        signal: aifetch.AbortSignal | None = ...,
    ) -> Awaitable[aifetch.AsyncResponse]: ...


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
        self.kind = config.kind
        dialect = dialect_of(config.kind) if config.kind in TRANSLATED_KINDS else None
        pipes: list[Any] = []
        if config.kind == "mock":
            pipes.append(mock_pipe(config.mock))
            self.base = "http://mock.invalid"
        else:
            default = dialect.default_base_url if dialect is not None else ""
            self.base = (config.base_url or default).rstrip("/")
        # Every call sends the same headers: built once here and copied as they are per
        # request (a bearer pipe would merge them again on every call).
        headers = aifetch.Headers({"content-type": "application/json"})
        if config.kind == "anthropic":
            headers.append("anthropic-version", config.anthropic_version)
        for header, value in config.headers.items():
            if header.lower() != "content-type":
                headers.append(header, value)
        if config.api_key and config.kind != "mock":
            auth = dialect.auth_headers(config.api_key) if dialect is not None else None
            for header, value in auth or [("authorization", f"Bearer {config.api_key}")]:
                if header not in headers:
                    headers.append(header, value)
        self.headers = headers
        # Answers worth another try: Anthropic's 529 (overloaded) besides the usual ones.
        self.retry_statuses = (
            dialect.retry_statuses if dialect is not None else DEFAULT_RETRY_STATUSES
        )
        self._urls: dict[str, str] = {}
        t = config.timeout
        settings: dict[str, Any] = dict(
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
        self.http = aifetch.AsyncClient(**settings)
        # Streaming calls on the lean transport when configured (the slots below bound
        # the calls of both clients together).
        lean = config.stream_transport == "lean" and config.kind != "mock"
        self.stream_http = aifetch.AsyncClient(**settings, transport="lean") if lean else self.http
        # What calls go through: the upstream's own clients, or in a view, a wrapper.
        self.client: Fetcher = self.http
        self.stream_client: Fetcher = self.stream_http
        self.secrets = secrets
        size = config.max_connections
        share = config.max_connections_per_caller or (max(1, size // 2) if shared else size)
        self.slots = Slots(size, share)
        self.pool_wait = config.timeout.pool

    def view(self, **changes: Any) -> Upstream:
        """This upstream with some attributes changed (``headers``, ``client``), sharing
        its connection pool, slots and secrets: how one model's target, or one call, talks
        to it differently."""
        view = copy.copy(self)
        for name, value in changes.items():
            if not hasattr(self, name):
                raise AttributeError(f"Upstream has no attribute {name!r}")
            setattr(view, name, value)
        return view

    def url(self, path: str) -> str:
        """The URL of ``path`` under ``base_url``. One string per path, kept: the client's
        URL caches then find it by a hash computed once."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self.base + path
        return url

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.stream_http is not self.http:
            await self.stream_http.aclose()


def answer_headers(resp: aifetch.AsyncResponse) -> list[tuple[str, str]]:
    """The upstream headers a successful answer carries to the caller, content type first:
    its type, and the upstream's request id (what a support ticket asks for). One pass
    over the response's headers."""
    ctype, request_id = "", None
    for name, value in resp.headers.items():
        if len(name) == 12:  # both names are 12 letters: others need no lower()
            lower = name.lower()
            if lower == "content-type" and not ctype:
                ctype = value
            elif lower == "x-request-id" and request_id is None:
                request_id = value
    if request_id is None:
        return [("content-type", ctype)]
    return [("content-type", ctype), ("x-request-id", request_id)]
