"""The provider pipes' async body (``aifetch.providers.anthropic(...)`` and ``gemini(...)``
make the spec): an OpenAI chat request in, the provider's request out, and the provider's
answer handed back in OpenAI's shape, so ``resp.json()``, ``ChatStream`` and the typed
errors work as they do against OpenAI.

* Only ``POST …/chat/completions`` is served (relative or absolute URL); anything else is
  answered 404 without a request to the provider.
* A request the dialect cannot translate is answered 400 here (``TranslationError``'s
  OpenAI-shaped body), which the client raises as ``BadRequestError``.
* A stream is translated as it arrives, read by read: no answer is collected first.
* An error status is kept, with an OpenAI-shaped body (the key scrubbed, should a provider
  ever quote it), so ``HTTPError.message``/``type``/``code`` are filled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .._errors import BodyTooLargeError
from .._headers import Headers
from .._sse import SSEDecoder
from ..providers._errors import openai_error_body
from ..providers._types import ProviderOptions, StreamTranslator, TranslationError
from ._response import AsyncResponse

if TYPE_CHECKING:
    from .._request import Request
    from ..providers._dialect import Dialect
    from ._pipes import AsyncNext

__all__ = ["ProviderPipe"]

_CHAT_PATH = "/chat/completions"
_MAX_BODY = 64 * 1024 * 1024  # a whole (non-stream) answer is read up to this
_MAX_ERROR_BODY = 1024 * 1024
_MAX_TRAILING = 64 * 1024  # read after the end of a stream, to leave the connection reusable
_JSON = "application/json"
_EVENT_STREAM = "text/event-stream; charset=utf-8"
# The body changes, so its framing and type headers are the translation's, not the provider's.
_REPLACED = frozenset({"content-length", "content-type", "content-encoding", "transfer-encoding"})
# Credentials meant for another API never go to the provider.
_CREDENTIALS = ("authorization", "api-key", "x-api-key", "x-goog-api-key")
_REDACTED = b"[redacted]"


class ProviderPipe:
    """One provider (a ``Dialect``), its key and its base URL, as a client pipe."""

    def __init__(
        self, dialect: Dialect, api_key: str, base_url: str, options: ProviderOptions
    ) -> None:
        self.dialect = dialect
        self.base_url = base_url.rstrip("/")
        self.options = options
        self.auth = dialect.auth_headers(api_key)
        self.secret = api_key.encode()

    def __repr__(self) -> str:
        return f"<ProviderPipe {self.dialect.name} {self.base_url}>"

    async def __call__(self, request: Request, next: AsyncNext) -> AsyncResponse:
        if request.method != "POST" or not urlsplit(request.url).path.endswith(_CHAT_PATH):
            message = (
                f"the {self.dialect.name} provider pipe serves POST /chat/completions only, "
                f"not {request.method} {urlsplit(request.url).path}"
            )
            return _answer(request, 404, openai_error_body(message, "invalid_request_error"))
        if not isinstance(request.body, bytes):
            message = "the request body must be JSON bytes (send it with json= or body=)"
            return _answer(request, 400, openai_error_body(message, "invalid_request_error"))
        try:
            translated = self.dialect.build_request(request.body, options=self.options)
        except TranslationError as exc:
            return _answer(request, 400, exc.openai_body())
        headers = request.headers.copy()
        for name in (*_CREDENTIALS, "content-type", "content-length"):
            headers.delete(name)
        for name, value in (*translated.headers, *self.auth):
            headers.append(name, value)
        upstream = request.replace(
            url=self.base_url + translated.path, headers=headers, body=translated.body
        )
        response = await next(upstream)
        if not response.ok:
            return await self._error(response)
        if translated.stream:
            translator = self.dialect.stream_translator(include_usage=translated.include_usage)
            return _reply(response, _translate(response, translator), _EVENT_STREAM)
        return await self._whole(response)

    async def _whole(self, response: AsyncResponse) -> AsyncResponse:
        data = await response.bytes(limit=_MAX_BODY)
        try:
            body, _ = self.dialect.translate_response(data)
        except ValueError:  # msgspec.DecodeError: not the provider's documented shape
            message = f"the {self.dialect.name} provider answered with a body it does not document"
            body = openai_error_body(message, "upstream_error", None, "invalid_upstream_body")
            return _reply(response, body, _JSON, status=502)
        return _reply(response, body, _JSON)

    async def _error(self, response: AsyncResponse) -> AsyncResponse:
        try:
            data = await response.bytes(limit=_MAX_ERROR_BODY)
        except BodyTooLargeError:
            data = b""
        status, body = self.dialect.translate_error(response.status, data)
        if self.secret and self.secret in body:
            body = body.replace(self.secret, _REDACTED)
        return _reply(response, body, _JSON, status=status)


def _answer(request: Request, status: int, body: bytes) -> AsyncResponse:
    """A response made here, without a request to the provider."""
    response = AsyncResponse(body, status=status, headers={"content-type": _JSON}, url=request.url)
    response.request = request
    return response


def _reply(
    response: AsyncResponse,
    body: bytes | AsyncIterator[bytes],
    content_type: str,
    status: int | None = None,
) -> AsyncResponse:
    headers = Headers([(n, v) for n, v in response.headers.items() if n.lower() not in _REPLACED])
    headers.append("content-type", content_type)
    same = status is None or status == response.status
    out = AsyncResponse(
        body,
        status=response.status if status is None else status,
        headers=headers,
        url=response.url,
        status_text=response.status_text if same else None,
    )
    out.request = response.request
    out.redirected = response.redirected
    return out


async def _translate(response: AsyncResponse, translator: StreamTranslator) -> AsyncIterator[bytes]:
    """The provider's stream, translated read by read; ``close()`` at its clean end."""
    decoder = SSEDecoder()
    feed = translator.feed
    trailing = 0
    try:
        async for data in response.body:
            if translator.done or translator.error is not None:
                trailing += len(data)  # the answer is over: drain a little, then let go
                if trailing > _MAX_TRAILING:
                    break
                continue
            out = b"".join([feed(event) for event in decoder.feed(data)])
            if out:
                yield out
        tail = translator.close()
        if tail:
            yield tail
    finally:
        await response.aclose()
