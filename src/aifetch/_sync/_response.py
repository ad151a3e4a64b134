# Generated from src/aifetch/_async/_response.py by scripts/unasync.py: do not edit.
"""``Response``: status, headers and a one-shot body, as fetch's Response."""

from __future__ import annotations

import builtins
import codecs
import time
from collections.abc import Iterable, Iterator
from email.message import Message
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from .._errors import BodyTooLargeError, BodyUsedError, ContentTypeError, error_class_for_status
from .._headers import Headers, HeadersInit
from .._provider_error import parse_error_body, request_id_from
from .._redact import redact_url
from .._retry_timing import server_wait
from .._status import reason_phrase

if TYPE_CHECKING:
    from .._request import Request
    from ..sse import ServerSentEvent

__all__ = ["Response", "BodySource"]

ERROR_BODY_LIMIT = 1 << 20  # an error body is read before raising; 1 MiB is plenty for one


class BodySource(Protocol):
    @property
    def done(self) -> bool:
        """True once the source has nothing more to give and nothing left to free: the
        reader stops without another read() and skips close()."""
        ...

    def read(self) -> bytes: ...  # b"" at the end
    def close(self) -> None: ...


class _BytesSource:
    __slots__ = ("_data", "done")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.done = False

    def read(self) -> bytes:
        data, self._data = self._data, b""
        self.done = True
        return data

    def close(self) -> None:
        self._data = b""
        self.done = True


class _IterableSource:
    __slots__ = ("_iterator", "done")

    def __init__(self, iterable: Iterable[bytes]) -> None:
        self._iterator: Iterator[bytes] | None = iter(iterable)
        self.done = False

    def read(self) -> bytes:
        if self._iterator is None:
            return b""
        while True:
            try:
                chunk = next(self._iterator)
            except StopIteration:
                self._iterator = None
                self.done = True
                return b""
            if chunk:
                return bytes(chunk)

    def close(self) -> None:
        iterator, self._iterator = self._iterator, None
        self.done = True
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _charset(content_type: str | None) -> str:
    if content_type:
        msg = Message()
        msg["content-type"] = content_type
        charset = msg.get_param("charset")
        if isinstance(charset, str):
            try:
                return codecs.lookup(charset.strip().strip('"')).name
            except LookupError:
                pass
    return "utf-8"


class Response:
    """A response whose body can be read once: ``body``, ``bytes()``, ``text()``, ``json()``
    or ``events()``. Close it (or use ``with``) when you stop before the end, so its
    connection is freed.

    Built directly (``Response(b"...", status=200)``) it is a synthetic response, which
    a pipe can return without calling ``next``.
    """

    __slots__ = (
        "_closed",
        "_source",
        "_used",
        "headers",
        "redirected",
        "request",
        "retries_taken",
        "status",
        "status_text",
        "type",
        "url",
    )

    def __init__(
        self,
        body: bytes | str | Iterable[bytes] = b"",
        *,
        status: int = 200,
        headers: HeadersInit | None = None,
        url: str = "",
        status_text: str | None = None,
    ) -> None:
        if not 200 <= status <= 599:
            raise ValueError(f"status must be in 200..599, got {status}")
        if isinstance(body, str):
            body = body.encode()
        source: BodySource = (
            _BytesSource(body) if isinstance(body, bytes) else _IterableSource(body)
        )
        self._init(status, status_text, Headers(headers), url, source)

    def _init(
        self, status: int, status_text: str | None, headers: Headers, url: str, source: BodySource
    ) -> None:
        self.status = status
        self.status_text = status_text or reason_phrase(status)
        self.headers = headers
        self.url = url
        self.redirected = False
        self.type = "basic"
        self.retries_taken = 0
        self.request: Request | None = None
        self._source = source
        self._used = False
        self._closed = False

    @classmethod
    def error(cls) -> Response:
        """A network-error response, as fetch's ``Response.error()``: status 0, type
        ``"error"``, no body. The client raises ``NetworkError`` instead of returning one;
        a pipe may return it to stand for a failure without raising."""
        response = cls.__new__(cls)
        response._init(0, "", Headers(), "", _BytesSource(b""))
        response.type = "error"
        return response

    @property
    def ok(self) -> bool:
        """True for 200–299 exactly (aiohttp's ``ok`` also takes 3xx; fetch's does not)."""
        return 200 <= self.status <= 299

    @property
    def body_used(self) -> bool:
        return self._used

    @property
    def body(self) -> Iterator[bytes]:
        """The body as raw chunks, as they arrive. One-shot: a second use raises."""
        self._take()
        return self._chunks()

    def _take(self) -> None:
        if self._used:
            raise self._used_error()
        self._used = True

    def _used_error(self) -> BodyUsedError:
        return BodyUsedError(
            f"the body of the response from {redact_url(self.url)} was already read "
            "or closed; "
            "a response body can be read once (keep the bytes if you need them twice)"
        )

    def _chunks(self) -> Iterator[bytes]:
        source = self._source
        try:
            while chunk := source.read():
                yield chunk
        finally:
            self.close()

    def bytes(self, *, limit: int | None = None) -> builtins.bytes:
        """The whole body. With ``limit``, more than that many bytes raises
        ``BodyTooLargeError`` (and closes the response)."""
        if self._used:  # self._take(), without a call of its own: this is the hot path
            raise self._used_error()
        self._used = True
        parts: list[builtins.bytes] = []
        size = 0
        source = self._source
        try:
            while chunk := source.read():
                size += len(chunk)
                if limit is not None and size > limit:
                    raise BodyTooLargeError(
                        f"the body of the response from {redact_url(self.url)} is larger "
                        f"than the {limit} bytes allowed"
                    )
                parts.append(chunk)
                if source.done:  # the last chunk: no read() just to get b""
                    break
        finally:
            if not self._closed:  # self.close(), without a coroutine of its own
                self._closed = True
                if not source.done:
                    source.close()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def text(self) -> str:
        """The body decoded with the charset of Content-Type (UTF-8 if none): a BOM is
        dropped and invalid bytes become U+FFFD, as fetch's ``text()`` does."""
        return self._decode(self.bytes())

    def _decode(self, data: builtins.bytes) -> str:
        charset = _charset(self.headers.get("content-type"))
        if charset == "utf-8":
            return data.decode("utf-8-sig", "replace")
        return data.decode(charset, "replace")

    def json(self) -> Any:
        """The body parsed as JSON (UTF-8, BOM dropped, invalid bytes replaced)."""
        data = self.bytes()
        if data.startswith(codecs.BOM_UTF8):
            data = data[3:]
        try:
            return msgspec.json.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            # msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 inside
            # a string; fetch's json() decodes with replacement, so retry that way.
            pass
        try:
            return msgspec.json.decode(data.decode("utf-8", "replace").encode())
        except msgspec.DecodeError as exc:
            raise ValueError(
                f"the body of the response from {redact_url(self.url)} is not valid JSON: {exc}"
            ) from None

    def events(self) -> Iterator[ServerSentEvent]:
        """The body as Server-Sent Events (WHATWG HTML §9.2). A non-2xx response raises its
        ``HTTPError``; a 2xx that is not ``text/event-stream`` raises ``ContentTypeError``."""
        from ..sse import SSEDecoder

        if not self.ok:
            self.raise_for_status()
        content_type = self.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "text/event-stream":
            self.close()
            raise ContentTypeError(
                f"expected an event stream (text/event-stream) from {redact_url(self.url)}, "
                f"got {content_type or 'no Content-Type'!r}"
            )
        decoder = SSEDecoder()
        for chunk in self.body:
            for event in decoder.feed(chunk):
                yield event
        for event in decoder.close():
            yield event

    def raise_for_status(self, *, note: str | None = None) -> None:
        """Raise the ``HTTPError`` subclass for a non-2xx status, with the body (read up
        to 1 MiB) and the provider's error fields parsed from it."""
        if self.ok:
            return
        body: Any = None
        provider = None
        if not self._used:
            try:
                raw = self.bytes(limit=ERROR_BODY_LIMIT)
            except BodyTooLargeError:
                note = "error body over 1 MiB, not read"
            else:
                body, provider = parse_error_body(raw, self.headers.get("content-type"))
        headers = self.headers
        request = self.request
        raise error_class_for_status(self.status)(
            status=self.status,
            status_text=self.status_text,
            method=request.method if request is not None else "GET",
            url=redact_url(self.url),
            request=request,
            response=self,
            body=body,
            provider=provider,
            request_id=request_id_from(headers.get),
            retry_after=server_wait(headers.get, now=time.time()),
            note=note,
        )

    def close(self) -> None:
        """Free the connection. Unread body bytes are discarded, and the body counts as
        used (fetch marks a cancelled body disturbed), so a later read raises rather than
        passing off the discarded rest as an empty body."""
        if not self._closed:
            self._closed = True
            self._used = True
            self._source.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} [{self.status} {self.status_text}] {redact_url(self.url)}>"
