"""URLs as the fetch standard sends them: serialised per the URL standard, never re-encoded.

What the caller escaped stays escaped; what must be escaped (spaces, quotes, non-ASCII) is
percent-encoded once; the fragment is never sent; credentials inside a URL are refused.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import TypeAlias
from urllib.parse import urlencode, urljoin, urlsplit

from ._errors import InvalidURLError
from ._redact import redact_url

__all__ = ["ParamsInit", "join_base", "normalize_url", "origin_of", "resolve_redirect"]

ParamsInit: TypeAlias = (
    "Mapping[str, str | int | float | bool] | Iterable[tuple[str, str | int | float | bool]]"
)

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _encode_set(extra: str) -> frozenset[int]:
    # URL standard §1.3: the C0 control set plus each set's own characters, and DEL.
    return frozenset(range(0x21)) | {0x7F} | frozenset(extra.encode())


_PATH_SET = _encode_set(' "#<>?`{}')
_QUERY_SET = _encode_set(" \"#<>'")


def _percent_encode(text: str, encode_set: frozenset[int]) -> str:
    if text.isascii() and not any(ord(c) in encode_set for c in text):
        return text
    out: list[str] = []
    for byte in text.encode("utf-8", "surrogatepass"):
        if byte >= 0x80 or byte in encode_set:
            out.append(f"%{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    # URL standard path parsing: "." and ".." segments (also "%2e" spellings) are resolved.
    if "." not in path:
        return path
    segments: list[str] = []
    parts = path.split("/")
    for i, seg in enumerate(parts[1:], start=1):
        low = seg.lower()
        last = i == len(parts) - 1
        if low in (".", "%2e"):
            if last:
                segments.append("")
            continue
        if low in ("..", ".%2e", "%2e.", "%2e%2e"):
            if segments:
                segments.pop()
            if last:
                segments.append("")
            continue
        segments.append(seg)
    return "/" + "/".join(segments)


@functools.lru_cache(maxsize=1024)
def normalize_url(url: str) -> str:
    """The URL to put on the wire, or ``InvalidURLError`` saying why not.

    Cached: clients call the same few URLs over and over, and this runs on each call.
    """
    try:
        parts = urlsplit(url.replace("\\", "/"))
        port = parts.port
    except ValueError as exc:
        raise InvalidURLError(f"invalid URL {redact_url(url)!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidURLError(
            f"unsupported URL {redact_url(url)!r}: only http and https URLs can be fetched"
        )
    if "@" in parts.netloc:
        raise InvalidURLError(
            f"URL {redact_url(url)!r} has credentials in it; fetch refuses those: "
            "send them in a header (e.g. pipes.bearer or an Authorization header)"
        )
    host = parts.hostname or ""
    if not host:
        raise InvalidURLError(f"URL {redact_url(url)!r} has no host")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidURLError(f"URL {redact_url(url)!r} has an invalid host: {exc}") from None
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _remove_dot_segments(_percent_encode(parts.path or "/", _PATH_SET))
    query = (
        f"?{_percent_encode(parts.query, _QUERY_SET)}" if parts.query or url.endswith("?") else ""
    )
    return f"{scheme}://{netloc}{path}{query}"


def join_base(base_url: str | None, url: str) -> str:
    """Put ``url`` under ``base_url`` unless it is absolute.

    Unlike RFC 3986 resolution, the base's path is kept: with a base of
    ``https://api.openai.com/v1``, ``/chat/completions`` goes to ``.../v1/chat/completions``,
    which is what every API client means by a base URL.
    """
    if base_url is None or "://" in url:
        return url
    if not url:
        return base_url
    return base_url.rstrip("/") + "/" + url.lstrip("/")


def add_params(url: str, params: ParamsInit | None) -> str:
    if not params:
        return url
    pairs = params.items() if isinstance(params, Mapping) else params
    encoded = urlencode([(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in pairs])
    if not encoded:
        return url
    base, hash_, frag = url.partition("#")
    sep = (
        "&"
        if "?" in base and not base.endswith(("?", "&"))
        else ("" if base.endswith(("?", "&")) else "?")
    )
    return f"{base}{sep}{encoded}{hash_}{frag}"


def origin_of(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def resolve_redirect(current: str, location: str) -> str:
    """The absolute URL a ``Location`` points to, relative to the URL that answered."""
    return normalize_url(urljoin(current, location.strip()))
