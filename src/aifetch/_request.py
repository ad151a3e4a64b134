"""``Request``: what a pipe receives, and what the transport sends."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any

import msgspec

from ._abort import AbortSignal
from ._headers import Headers, HeadersInit
from ._redact import redact_url
from ._timeouts import Timeout, TimeoutInit, to_timeout
from ._types import UNSET, BodyInit, RedirectMode
from ._urls import ParamsInit, add_params, normalize_url

__all__ = ["Request"]

_json_encode = msgspec.json.Encoder().encode
_STANDARD_METHODS = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"})
_REDIRECT_MODES = frozenset({"follow", "manual", "error"})


def _normalize_method(method: str) -> str:
    # fetch upper-cases the standard methods only; anything else is sent as written.
    upper = method.upper()
    if upper in _STANDARD_METHODS:
        return upper
    if not method or not all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in method):
        raise ValueError(f"invalid HTTP method {method!r}")
    if upper in ("CONNECT", "TRACE", "TRACK"):
        raise ValueError(f"fetch refuses the {upper} method")
    return method


class Request:
    """One request. Pipes may change it (``replace`` makes a changed copy).

    ``body`` is ``None``, ``bytes`` (replayable, so retries and 307/308 redirects can send
    it again), or an iterable / async iterable of ``bytes`` streamed once.
    ``extensions`` is a free dict for pipes to pass values along the chain.
    """

    __slots__ = (
        "body",
        "deadline",
        "extensions",
        "headers",
        "method",
        "redirect",
        "signal",
        "timeout",
        "url",
    )

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: HeadersInit | None = None,
        body: BodyInit | None = None,
        json: Any = UNSET,
        params: ParamsInit | None = None,
        signal: AbortSignal | None = None,
        timeout: TimeoutInit = UNSET,
        redirect: RedirectMode = "follow",
    ) -> None:
        self._init(url, method, headers, body, json, params, signal, timeout, redirect)

    def _init(
        self,
        url: str,
        method: str,
        headers: HeadersInit | None,
        body: BodyInit | None,
        json: Any,
        params: ParamsInit | None,
        signal: AbortSignal | None,
        timeout: TimeoutInit,
        redirect: RedirectMode,
    ) -> None:
        """``__init__`` with positional arguments, for the client's hot path: keyword
        arguments to a class call cost a dict per call on CPython 3.11."""
        self.method = method if method in _STANDARD_METHODS else _normalize_method(method)
        if params:
            url = add_params(url, params)
        # A relative URL waits for a base_url (client option or pipe); it is checked on send.
        self.url = normalize_url(url) if "://" in url else url
        self.headers = Headers(headers)
        if redirect not in _REDIRECT_MODES:
            raise ValueError(f"redirect must be 'follow', 'manual' or 'error', not {redirect!r}")
        self.redirect: RedirectMode = redirect
        self.signal = signal
        self.timeout: Timeout | None = None if timeout is UNSET else to_timeout(timeout)
        self.deadline: float | None = None
        self.extensions: dict[str, Any] = {}
        if type(body) is bytes and json is UNSET:  # the common case first
            self.body: bytes | Iterable[bytes] | AsyncIterable[bytes] | None = body
        elif json is not UNSET:
            if body is not None:
                raise TypeError("pass either body= or json=, not both")
            self.body = _json_encode(json)
            self.headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            self.body = body.encode()
            self.headers.setdefault("Content-Type", "text/plain;charset=UTF-8")
        elif isinstance(body, bytearray | memoryview):
            self.body = bytes(body)
        else:
            self.body = body
        if self.body is not None and self.method in ("GET", "HEAD"):
            raise TypeError(f"a {self.method} request cannot have a body")

    @property
    def replayable(self) -> bool:
        """Whether the body can be sent again (for a retry or a 307/308 redirect)."""
        return self.body is None or isinstance(self.body, bytes)

    def replace(self, **changes: Any) -> Request:
        """A copy with some attributes changed (``url``, ``method``, ``headers``, ``body``…)."""
        new = Request.__new__(Request)
        for name in Request.__slots__:
            setattr(new, name, getattr(self, name))
        new.headers = self.headers.copy()
        new.extensions = dict(self.extensions)
        for name, value in changes.items():
            if name == "url":
                value = normalize_url(value) if "://" in value else value
            elif name == "headers":
                value = Headers(value)
            elif name == "method":
                value = _normalize_method(value)
            elif name not in Request.__slots__:
                raise TypeError(f"Request has no attribute {name!r}")
            setattr(new, name, value)
        return new

    def __repr__(self) -> str:
        return f"<Request {self.method} {redact_url(self.url)}>"
