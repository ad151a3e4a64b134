"""The browser half, served by the gateway: ``GET /aifetch.js`` (and its ``.d.ts``) and the
``/playground`` page with its script and style.

``static_response`` is pure: a path and the request's ``If-None-Match`` in, status, headers
and body out. The files ship inside the package (``aifetch/js/``); each is read and hashed
once, on first use. Browsers revalidate every time (``Cache-Control: no-cache``) and get a
bodiless 304 while the strong ETag still matches, so an upgraded gateway is picked up at once.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib.resources import files
from typing import Final, NamedTuple

from ._context import RequestContext

__all__ = ["STATIC_PATHS", "StaticFile", "StaticResponse", "static_paths", "static_response"]

Headers = list[tuple[bytes, bytes]]

_JS: Final = b"text/javascript; charset=utf-8"
# path -> (file in aifetch/js/, Content-Type, part of the playground)
_FILES: Final[dict[str, tuple[str, bytes, bool]]] = {
    "/aifetch.js": ("aifetch.js", _JS, False),
    "/aifetch.d.ts": ("aifetch.d.ts", b"text/plain; charset=utf-8", False),
    "/playground": ("playground.html", b"text/html; charset=utf-8", True),
    "/playground.js": ("playground.js", _JS, True),
    "/playground.css": ("playground.css", b"text/css; charset=utf-8", True),
}
STATIC_PATHS: Final = frozenset(_FILES)

# The page may run and fetch only what this gateway serves: no inline script, no other
# origin, no framing (CSP Level 3). The gateway key typed into it can go nowhere else.
_PAGE_HEADERS: Final[Headers] = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
        b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"referrer-policy", b"no-referrer"),
]
_COMMON: Final[Headers] = [
    (b"cache-control", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
]


class StaticResponse(NamedTuple):
    status: int
    headers: Headers
    body: bytes


class _File(NamedTuple):
    body: bytes
    etag: bytes
    headers: Headers


@cache
def _load(path: str) -> _File:
    name, content_type, _ = _FILES[path]
    body = (files("aifetch") / "js" / name).read_bytes()
    # A strong validator (RFC 9110 §8.8.3): it changes whenever one byte does.
    digest = hashlib.sha256(body).digest()[:18]
    etag = b'"' + base64.urlsafe_b64encode(digest) + b'"'
    headers = [(b"content-type", content_type), (b"etag", etag), *_COMMON]
    if name.endswith(".html"):
        headers += _PAGE_HEADERS
    return _File(body, etag, headers)


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    """RFC 9110 §13.1.2: ``*`` or any listed tag, compared weakly (a ``W/`` prefix ignored)."""
    for tag in if_none_match.split(b","):
        tag = tag.strip()
        if tag == b"*" or tag.removeprefix(b"W/") == etag:
            return True
    return False


def static_response(
    path: str, if_none_match: bytes | None, *, playground: bool = True
) -> StaticResponse | None:
    """The answer to ``GET path``, or ``None`` when the gateway serves no such file (or the
    playground is switched off and ``path`` belongs to it)."""
    entry = _FILES.get(path)
    if entry is None or (entry[2] and not playground):
        return None
    found = _load(path)
    if if_none_match is not None and _matches(if_none_match, found.etag):
        return StaticResponse(304, [(b"etag", found.etag), *_COMMON], b"")
    return StaticResponse(
        200, [*found.headers, (b"content-length", b"%d" % len(found.body))], found.body
    )


def static_paths(playground: bool) -> list[str]:
    """The paths served, without the playground's when it is switched off."""
    return [path for path, (_, _, page) in _FILES.items() if playground or not page]


class StaticFile:
    """The route handler for one of the files. An allowed origin's CORS headers go with
    it, so a page on that origin can import the module."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def __call__(self, ctx: RequestContext) -> None:
        if_none_match = next((v for k, v in ctx.headers if k == b"if-none-match"), None)
        answer = static_response(self.path, if_none_match)
        assert answer is not None  # the route exists only for served paths
        ctx.status = answer.status
        await ctx.send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [*answer.headers, *ctx.answer_headers],
            }
        )
        await ctx.send({"type": "http.response.body", "body": answer.body})
