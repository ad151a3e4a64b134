"""HTTP/1.1 for the client side, without I/O: where a URL goes, the request head, chunk
framing, and a bounded decoder for compressed bodies.

The lean transport (``_async/_lean.py``) writes these bytes and feeds what comes back to
``httptools``' response parser; nothing here touches a socket or a loop.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterable
from typing import NamedTuple

from ._errors import InvalidURLError
from ._redact import redact_url

__all__ = [
    "LAST_CHUNK",
    "MAX_DECODED_READ",
    "ContentDecoder",
    "Target",
    "frame_chunk",
    "request_head",
    "target_of",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# What aiohttp sends unless told otherwise, so an upstream sees the same request from
# either transport (the decoder below reads both codings).
_DEFAULTS = (("User-Agent", "aifetch/0.1"), ("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate"))
# Framing is the transport's job (RFC 9112 §6): a caller's value could contradict the body.
_FRAMING = frozenset({"content-length", "transfer-encoding"})
# RFC 9110 §8.6: a user agent should send Content-Length: 0 when a method that usually
# carries a body has none.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
LAST_CHUNK = b"0\r\n\r\n"
# A compressed body cannot expand past this per read: the rest waits for the next read.
MAX_DECODED_READ = 1 << 20


class Target(NamedTuple):
    """Where a request goes and what its request line names."""

    scheme: str
    host: str  # for the connect: no brackets around an IPv6 literal
    port: int
    authority: str  # the Host header: host[:port], the default port left out
    path: str  # origin-form, RFC 9112 §3.2.1: path and query

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


@functools.lru_cache(maxsize=1024)
def target_of(url: str) -> Target:
    """``url`` (as ``_urls.normalize_url`` wrote it) taken apart for the wire. Cached:
    clients call the same few URLs over and over."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _DEFAULT_PORTS:
        raise InvalidURLError(f"unsupported URL {redact_url(url)!r}: only http and https")
    slash = rest.find("/")
    authority, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    host, port = authority, _DEFAULT_PORTS[scheme]
    if authority.startswith("["):  # an IPv6 literal: [::1] or [::1]:8080
        end = authority.find("]")
        host = authority[1:end]
        if authority[end + 1 : end + 2] == ":":
            port = _port(authority[end + 2 :], url)
    elif ":" in authority:
        host, _, digits = authority.rpartition(":")
        port = _port(digits, url)
    if not host or "@" in authority:
        raise InvalidURLError(f"URL {redact_url(url)!r} has no host the transport can use")
    return Target(scheme, host, port, authority, path.partition("#")[0])


def _port(digits: str, url: str) -> int:
    if not digits.isdigit() or not 0 < int(digits) < 65536:
        raise InvalidURLError(f"URL {redact_url(url)!r} has an invalid port")
    return int(digits)


def request_head(
    method: str,
    target: Target,
    headers: Iterable[tuple[str, str]],
    length: int | None,
    *,
    chunked: bool = False,
) -> bytes:
    """The request line and header section (RFC 9112 §3, §5), ending in the empty line.

    ``length``: the body's size for ``Content-Length`` (``None``: no body, or ``chunked``).
    The caller's headers were checked when they went into ``Headers`` (no CR, LF or NUL,
    token names); a ``Host`` of the caller's own replaces the URL's.
    """
    lines = [f"{method} {target.path} HTTP/1.1\r\n"]
    seen: set[str] = set()
    for name, value in headers:
        lower = name.lower()
        if lower in _FRAMING:
            continue
        seen.add(lower)
        lines.append(f"{name}: {value}\r\n")
    if "host" not in seen:
        lines.insert(1, f"Host: {target.authority}\r\n")
    for name, value in _DEFAULTS:
        if name.lower() not in seen:
            lines.append(f"{name}: {value}\r\n")
    if chunked:
        lines.append("Transfer-Encoding: chunked\r\n")
    elif length is not None:
        lines.append(f"Content-Length: {length}\r\n")
    elif method in _BODY_METHODS:
        lines.append("Content-Length: 0\r\n")
    lines.append("\r\n")
    # UTF-8, as aiohttp writes a head: Headers holds str, and a non-Latin-1 value must
    # still go out as some bytes rather than fail here.
    return "".join(lines).encode("utf-8")


def frame_chunk(data: bytes) -> bytes:
    """One chunk of a chunked request body (RFC 9112 §7.1); never empty (that ends it)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class ContentDecoder:
    """A ``gzip`` or ``deflate`` body (RFC 9110 §8.4.1) decoded as it arrives.

    At most ``MAX_DECODED_READ`` bytes come out per call, so a small compressed read cannot
    become a huge buffer; input not yet decoded is kept (``pending``) for the next call.
    ``deflate`` is tried as zlib-wrapped first and raw second: servers send both.
    """

    __slots__ = ("_coding", "_started", "_z")

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._z = zlib.decompressobj(31 if coding == "gzip" else 15)
        self._started = False

    @staticmethod
    def for_coding(header: str | None) -> ContentDecoder | None:
        """A decoder for the ``Content-Encoding`` value, or ``None`` to pass bytes as they
        are (none, ``identity``, or a coding this transport did not ask for)."""
        if header is None:
            return None
        coding = header.strip().lower()
        if coding in ("gzip", "x-gzip"):
            return ContentDecoder("gzip")
        if coding == "deflate":
            return ContentDecoder("deflate")
        return None

    @property
    def pending(self) -> bool:
        return bool(self._z.unconsumed_tail)

    def feed(self, data: bytes) -> bytes:
        """Decoded bytes for ``data`` and whatever was pending; ``zlib.error`` when the
        body is not what its coding says."""
        data = self._z.unconsumed_tail + data if self._z.unconsumed_tail else data
        if not self._started and data and self._coding == "deflate":
            self._started = True
            try:
                return self._z.decompress(data, MAX_DECODED_READ)
            except zlib.error:
                self._z = zlib.decompressobj(-15)  # raw deflate, no zlib header
        return self._z.decompress(data, MAX_DECODED_READ)
