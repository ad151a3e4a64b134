"""Which HTTP proxy a request goes through (sans-IO: URLs and the environment in, a
``Proxy`` or ``None`` out), shared by both transports so they route alike.

- ``proxy="http://user:pass@proxy:3128"``: every request goes through it. An ``http://``
  target is sent to the proxy in absolute form (RFC 9112 §3.2.2); an ``https://`` target
  through a ``CONNECT`` tunnel (RFC 9110 §9.3.6), so the proxy sees only the host.
- ``trust_env=True`` and no ``proxy``: ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY``
  (either case; the standard library reads them) by the target's scheme, read once when
  the client is made, except for hosts in ``NO_PROXY``: a comma-separated list of host
  names (``example.com`` also matches its subdomains; a leading ``.`` changes nothing),
  IP addresses, either with an optional ``:port``, or ``*`` for every host, as curl reads
  it.

Credentials in a proxy URL never travel with it: the URL handed to the HTTP library has
none, and they go as a ``Proxy-Authorization: Basic`` value (RFC 9110 §11.7.1) to the
proxy only, so ``Proxy.url`` is what a message may print.
"""

from __future__ import annotations

import base64
import urllib.request
from typing import Final
from urllib.parse import unquote, urlsplit

__all__ = ["Proxy", "ProxyRoutes", "parse_proxy"]

_SCHEMES: Final = ("http", "https")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# Origins remembered per client; the gateway calls a handful.
_CACHE_SIZE = 256


class Proxy:
    """One proxy: its URL without credentials, and the header value that carries them."""

    __slots__ = ("authorization", "secrets", "url")

    def __init__(self, url: str, authorization: str | None, secrets: tuple[str, ...]) -> None:
        self.url = url
        self.authorization = authorization
        self.secrets = secrets  # what must never be printed: for redact_text

    def __repr__(self) -> str:
        return f"Proxy({self.url!r}, credentials={'yes' if self.authorization else 'no'})"


def parse_proxy(url: str, what: str = "proxy") -> Proxy:
    """A ``Proxy`` from ``http://[user:pass@]host[:port]``; ``ValueError`` names ``what``
    and never quotes the credentials."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text  # "proxy:3128", as HTTP_PROXY is often written
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{what} is not a URL (expected http://host:port)") from None
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise ValueError(f"{what}: expected an http:// or https:// URL with a host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{what}: a proxy URL has no path or query (expected http://host:port)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    clean = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    if parts.username is None and parts.password is None:
        return Proxy(clean, None, ())
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    userinfo = text.split("://", 1)[1].rsplit("@", 1)[0]
    secrets = tuple(s for s in (password, parts.password or "", userinfo, token) if s)
    return Proxy(clean, f"Basic {token}", secrets)


class ProxyRoutes:
    """The proxy (or none) for each target origin of one client."""

    __slots__ = ("_by_scheme", "_cache", "_fixed", "_no_proxy", "secrets")

    def __init__(self, proxy: str | None, trust_env: bool) -> None:
        self._fixed = parse_proxy(proxy) if proxy is not None else None
        self._by_scheme: dict[str, Proxy] = {}
        self._no_proxy: list[tuple[str, int | None]] = []
        self._cache: dict[str, Proxy | None] = {}
        if self._fixed is None and trust_env:
            for scheme, value in urllib.request.getproxies_environment().items():
                if scheme == "no":
                    self._no_proxy = _no_proxy_entries(value)
                elif value:
                    self._by_scheme[scheme] = parse_proxy(value, f"the {scheme}_proxy variable")
        proxies = [self._fixed] if self._fixed else list(self._by_scheme.values())
        # What a message must never show (see aifetch._redact.redact_text).
        self.secrets = tuple(s for p in proxies for s in p.secrets)

    @property
    def active(self) -> bool:
        """False when no request can go through a proxy: the transport skips routing."""
        return self._fixed is not None or bool(self._by_scheme)

    def for_url(self, url: str) -> Proxy | None:
        if self._fixed is not None:
            return self._fixed
        scheme, _, rest = url.partition("://")
        origin = scheme + "://" + rest.split("/", 1)[0].split("?", 1)[0]
        try:
            return self._cache[origin]
        except KeyError:
            pass
        proxy = self._by_scheme.get(scheme.lower()) or self._by_scheme.get("all")
        if proxy is not None and self._no_proxy:
            parts = urlsplit(origin)
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
            if _bypassed(parts.hostname or "", port, self._no_proxy):
                proxy = None  # the host is in NO_PROXY
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[origin] = proxy
        return proxy


def _no_proxy_entries(value: str) -> list[tuple[str, int | None]]:
    entries: list[tuple[str, int | None]] = []
    for raw in value.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        port: int | None = None
        host, colon, tail = entry.rpartition(":")
        if colon and tail.isdigit() and not host.endswith(":"):  # not a bare IPv6 address
            entry, port = host, int(tail)
        entries.append((entry.strip("[]").lstrip("."), port))
    return entries


def _bypassed(host: str, port: int | None, entries: list[tuple[str, int | None]]) -> bool:
    host = host.lower()
    for name, entry_port in entries:
        if entry_port is not None and entry_port != port:
            continue
        if name == "*" or host == name or host.endswith("." + name):
            return True
    return False
