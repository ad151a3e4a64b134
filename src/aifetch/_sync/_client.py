# Generated from src/aifetch/_async/_client.py by scripts/unasync.py: do not edit.
"""``Client``: fetch() with a pipe chain, a redirect loop and typed errors."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .._abort import AbortSignal
from .._errors import InvalidURLError, RedirectError
from .._headers import Headers, HeadersInit
from .._redact import redact_url
from .._request import Request
from .._status import REDIRECT_STATUSES
from .._timeouts import DEFAULT_TIMEOUT, TimeoutInit, to_timeout
from .._tls import tls_context
from .._types import UNSET, BodyInit, CertInit, RedirectMode, VerifyInit
from .._urls import ParamsInit, join_base, origin_of, resolve_redirect
from ._pipes import Next, Pipe, bind, fold
from ._response import Response
from ._transport import RawResponse, Sender, TransportName, make_transport

__all__ = ["Client"]

MAX_REDIRECTS = 20  # fetch's limit (aiohttp's own is 10)
_DRAIN_LIMIT = 64 * 1024  # a redirect's body is read out up to this, to keep its connection
# fetch §4.4 step 12: these go with the body when a redirect turns the request into a GET.
_BODY_HEADERS = ("content-encoding", "content-language", "content-location", "content-type")


class Client:
    """A pooled HTTP client with fetch's shape.

    ``pipes`` run around every request, outermost first, folded once here. Per-request
    ``pipes=`` *extend* the client's: they run inside the client's pipes, closest to the
    network, so a per-request pipe sees what the client's pipes made of the request.

    Network settings, for the client's own transport (not a ``transport=`` passed in):

    - ``proxy``: an HTTP proxy URL (``http://user:pass@proxy:3128``) for every request;
      ``https://`` targets go through a ``CONNECT`` tunnel.
    - ``trust_env``: without ``proxy``, honour ``HTTP_PROXY`` / ``HTTPS_PROXY`` /
      ``ALL_PROXY`` / ``NO_PROXY`` (and ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``); read once,
      here. Off by default: a server-side client should not change route with its
      environment unless asked.
    - ``verify``: ``True`` (system CAs), ``False``, a CA bundle path, or an
      ``ssl.SSLContext``. ``cert``: a client certificate, one PEM path (certificate and
      key) or a ``(certificate, key)`` pair.

    Proxy credentials go to the proxy only, and never appear in a message or a log line.

    ``transport``: ``"lean"`` (on asyncio only) sends over the experimental lean HTTP/1.1
    transport (``aifetch/_async/_lean.py``, measured in bench/README.md), which takes the
    settings above and leaves proxied requests to aiohttp.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        headers: HeadersInit | None = None,
        pipes: Sequence[Pipe] = (),
        timeout: TimeoutInit = DEFAULT_TIMEOUT,
        throw_http_errors: bool = True,
        redirect: RedirectMode = "follow",
        max_connections: int = 100,
        max_connections_per_host: int = 0,
        proxy: str | None = None,
        trust_env: bool = False,
        verify: VerifyInit = True,
        cert: CertInit | None = None,
        transport: Sender | TransportName | None = None,
    ) -> None:
        self.base_url = base_url
        self.headers = Headers(headers)
        self.timeout = to_timeout(timeout)
        self.throw_http_errors = throw_http_errors
        self.redirect: RedirectMode = redirect
        self._pipes = tuple(bind(pipe) for pipe in pipes)
        self._chain: Next = fold(self._pipes, self._send)
        if transport is None or isinstance(transport, str):
            transport = make_transport(
                transport,
                max_connections=max_connections,
                max_connections_per_host=max_connections_per_host,
                ssl_context=tls_context(verify, cert, trust_env=trust_env),
                proxy=proxy,
                trust_env=trust_env,
            )
        self._transport: Sender = transport

    def fetch(
        self,
        resource: str | Request,
        *,
        method: str = UNSET,
        headers: HeadersInit | None = None,
        body: BodyInit | None = None,
        json: Any = UNSET,
        params: ParamsInit | None = None,
        signal: AbortSignal | None = None,
        timeout: TimeoutInit = UNSET,
        redirect: RedirectMode = UNSET,
        throw_http_errors: bool = UNSET,
        pipes: Sequence[Pipe] = UNSET,
    ) -> Response:
        """Send a request and return its response once the headers have arrived.

        A non-2xx status raises the matching ``HTTPError`` unless ``throw_http_errors``
        is off, in which case the response comes back unread, as plain fetch does.
        """
        if isinstance(resource, Request):
            request = resource
        else:
            if not self.headers._items:
                merged: Headers | HeadersInit | None = headers
            else:
                merged = self.headers.copy()
                if headers:
                    extra = Headers(headers)
                    for name in extra:
                        merged.delete(name)
                    for name, value in extra.items():
                        merged.append(name, value)
            # Request(...) without its keyword arguments (a dict per call): see Request._init.
            request = Request.__new__(Request)
            request._init(
                resource if self.base_url is None else join_base(self.base_url, resource),
                "GET" if method is UNSET else method,
                merged,
                body,
                json,
                params,
                signal,
                timeout,
                self.redirect if redirect is UNSET else redirect,
            )
        if request.deadline is None:
            total = (request.timeout or self.timeout).total
            if total is not None:
                request.deadline = time.monotonic() + total
        chain = self._chain
        if pipes is not UNSET and pipes:
            chain = fold((*self._pipes, *(bind(p) for p in pipes)), self._send)
        response = chain(request)
        throw = self.throw_http_errors if throw_http_errors is UNSET else throw_http_errors
        if throw and not response.ok and response.type != "opaqueredirect":
            response.raise_for_status()
        return response

    def _send(self, request: Request) -> Response:
        """The innermost step: the transport, and fetch's redirect rules around it."""
        if "://" not in request.url:
            raise InvalidURLError(
                f"{redact_url(request.url)!r} is a relative URL and the client has no base_url"
            )
        timeout = request.timeout or self.timeout
        current = request
        for hop in range(MAX_REDIRECTS + 1):
            raw = self._transport.send(current, timeout)
            location = raw.headers.get("location") if raw.status in REDIRECT_STATUSES else None
            if location is None or current.redirect == "manual":
                response = Response.__new__(Response)
                response._init(raw.status, raw.reason, raw.headers, current.url, raw.body)
                response.request = current
                response.redirected = hop > 0
                if location is not None:
                    response.type = "opaqueredirect"
                return response
            if current.redirect == "error":
                raw.body.close()
                raise RedirectError(
                    f"{current.method} {redact_url(current.url)} answered {raw.status} "
                    f"and redirect='error' forbids following it"
                )
            if hop == MAX_REDIRECTS:
                raw.body.close()
                raise RedirectError(
                    f"more than {MAX_REDIRECTS} redirects, starting from "
                    f"{request.method} {redact_url(request.url)}"
                )
            _drain(raw)
            current = _follow(current, raw.status, location)
        raise AssertionError("unreachable")

    def get(self, url: str, **options: Any) -> Response:
        return self.fetch(url, method="GET", **options)

    def head(self, url: str, **options: Any) -> Response:
        return self.fetch(url, method="HEAD", **options)

    def options(self, url: str, **options: Any) -> Response:
        return self.fetch(url, method="OPTIONS", **options)

    def post(self, url: str, **options: Any) -> Response:
        return self.fetch(url, method="POST", **options)

    def put(self, url: str, **options: Any) -> Response:
        return self.fetch(url, method="PUT", **options)

    def patch(self, url: str, **options: Any) -> Response:
        return self.fetch(url, method="PATCH", **options)

    def delete(self, url: str, **options: Any) -> Response:
        return self.fetch(url, method="DELETE", **options)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _drain(raw: RawResponse) -> None:
    """Read out a small redirect body so its connection can be reused; close a large one."""
    length = raw.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) <= _DRAIN_LIMIT:
        while raw.body.read():
            pass
    raw.body.close()


def _follow(request: Request, status: int, location: str) -> Request:
    """The next request of a redirect chain, per fetch §4.4 (HTTP-redirect fetch)."""
    try:
        url = resolve_redirect(request.url, location)
    except InvalidURLError as exc:
        raise RedirectError(f"cannot follow the redirect: {exc}") from None
    method, body = request.method, request.body
    headers = request.headers.copy()
    if (status in (301, 302) and method == "POST") or (
        status == 303 and method not in ("GET", "HEAD")
    ):
        method, body = "GET", None
        for name in (*_BODY_HEADERS, "content-length", "transfer-encoding"):
            headers.delete(name)
    elif body is not None and not request.replayable:
        raise RedirectError(
            f"{status} redirect from {redact_url(request.url)} needs the request body sent "
            "again, but it was a one-shot stream; send bytes to allow that"
        )
    if origin_of(url) != origin_of(request.url):
        # Credentials are for the origin they were given to (fetch drops Authorization).
        headers.delete("authorization")
        headers.delete("cookie")
    return request.replace(url=url, method=method, body=body, headers=headers)
