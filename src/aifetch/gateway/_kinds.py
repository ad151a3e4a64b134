"""How a call reaches each kind of upstream: a model's targets as the dispatcher tries them.

Each target becomes a ``Leg`` once, when the app is made: the upstream, the upstream's
name for the model, and the ``send`` that makes one attempt there.

* ``openai``: ``send`` is ``attempt`` itself, so the hot path gains no frame, object or
  per-chunk step.
* ``mock``: the same, except that the Responses API is refused.
* ``anthropic`` and ``gemini`` (translated, docs/DIALECTS.md): a chat completion is
  translated by the upstream's dialect (``aifetch.providers``) into the provider's request
  and sent; its answer is translated back by a client pipe made for that call (the
  upstream's client, wrapped for the call), before ``attempt`` reads it: a stream read by
  read into ``chat.completion.chunk`` bytes, a body into a ``chat.completion``, an error
  into OpenAI's shape with its status. So the commit
  point, the relay, usage, metrics and secrets scrubbing all work on OpenAI bytes, as for
  any upstream. What the dialect cannot translate is refused before anything is sent
  (400, ``param`` named), and the next target is tried.
* A ``/v1/messages`` call to an anthropic upstream is not translated twice: the caller's
  own Messages request is relayed byte-exact (the model renamed, the key swapped, the
  caller's ``anthropic-beta`` kept), and its answer comes back as Anthropic sent it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import aifetch
from aifetch.providers import (
    Dialect,
    ProviderOptions,
    ProviderRequest,
    StreamTranslator,
    TranslationError,
    dialect,
)
from aifetch.sse import SSEDecoder

from . import _codes as codes
from ._attempt import attempt
from ._call import CHAT, MESSAGES, RESPONSES, Call, Reply
from ._codes import ErrorSpec
from ._config import ModelConfig
from ._context import RequestContext
from ._failure import Failure
from ._parse import patch_body
from ._upstream import Upstream

if TYPE_CHECKING:
    from ._messages_in import Native

__all__ = ["Leg", "Send", "caller_betas", "legs_of", "native_headers", "translation_refused"]

Send = Callable[[Upstream, Call, bytes, RequestContext], Awaitable[Reply | Failure]]

# A translated answer is read whole up to this (as ``attempt`` reads any body).
_MAX_BODY = 64 * 1024 * 1024
_MAX_ERROR_BODY = 256 * 1024
# Read after the end of a translated stream, to leave the connection reusable.
_MAX_TRAILING = 64 * 1024
_JSON = "application/json"
_EVENT_STREAM = "text/event-stream; charset=utf-8"
# The body changes, so its framing and type are the translation's, not the provider's.
_REPLACED = frozenset({"content-length", "content-type", "content-encoding", "transfer-encoding"})
# Headers a translated request takes from its translation rather than the upstream's own.
_TRANSLATION_HEADERS = frozenset({"content-type", "anthropic-version", "anthropic-beta"})
_MAX_BETA = 1024  # characters of a caller's anthropic-beta passed on
# How Gemini says its key is wrong: the reason in the error's details, and its message.
_BAD_KEY = (b"API_KEY_INVALID", b"API key not valid")


class Leg:
    """One target as the dispatcher tries it (a class with slots, not a named tuple: its
    attributes are read on every call, and slot reads are the cheaper)."""

    __slots__ = ("model", "send", "upstream")

    def __init__(self, upstream: Upstream, model: str | None, send: Send) -> None:
        self.upstream = upstream
        self.model = model  # the upstream's name for the model (None: the public name)
        self.send = send


def legs_of(model: ModelConfig, upstreams: Mapping[str, Upstream]) -> tuple[Leg, ...]:
    """``model``'s targets, in order, as the dispatcher tries them."""
    legs = []
    for target in model.targets:
        upstream = upstreams[target.upstream]
        send: Send
        if upstream.kind == "openai":
            send = attempt
        elif upstream.kind == "mock":
            send = _mock_send
        else:
            send = ProviderSend(upstream, target.model, model)
        legs.append(Leg(upstream, target.model, send))
    return tuple(legs)


def _mock_send(
    upstream: Upstream, call: Call, body: bytes, ctx: RequestContext
) -> Awaitable[Reply | Failure]:
    if call.route == RESPONSES:
        return _refused(_not_served(upstream, call.route))
    return attempt(upstream, call, body, ctx)


async def _refused(failure: Failure) -> Failure:
    return failure


def _not_served(upstream: Upstream, route: str) -> Failure:
    message = f"upstream '{upstream.name}' (kind {upstream.kind}) does not serve {route}"
    if route == RESPONSES:
        message += "; the Responses API is relayed to openai-kind upstreams only"
    return Failure(codes.ROUTE_NOT_SUPPORTED, message, retryable=False)


_TRANSLATION_CODES: dict[str | None, ErrorSpec] = {
    "unsupported_parameter": codes.UNSUPPORTED_PARAMETER,
    "unsupported_value": codes.UNSUPPORTED_VALUE,
}


def translation_refused(exc: TranslationError) -> Failure:
    """A request a dialect cannot translate, refused before anything is sent."""
    spec = _TRANSLATION_CODES.get(exc.code, codes.INVALID_VALUE)
    return Failure(spec, exc.message, retryable=False, param=exc.param)


class ProviderSend:
    """One target on a translated upstream (anthropic, gemini): see the module docstring.
    ``model`` is the upstream's name for it (``None``: the public name)."""

    __slots__ = ("base_headers", "dialect", "model", "native", "options", "upstream")

    def __init__(self, upstream: Upstream, model: str | None, config: ModelConfig) -> None:
        self.upstream = upstream
        self.model = model
        self.dialect: Dialect = dialect(upstream.kind)
        betas = tuple(config.anthropic_beta)
        self.options = ProviderOptions(
            anthropic_version=upstream.headers.get("anthropic-version") or "2023-06-01",
            anthropic_beta=betas,
            max_tokens=config.default_max_tokens or ProviderOptions().max_tokens,
        )
        # The key and the operator's own headers; a translation adds its own.
        self.base_headers = [
            (name, value)
            for name, value in upstream.headers.items()
            if name.lower() not in _TRANSLATION_HEADERS
        ]
        # A /v1/messages call relayed as it is (anthropic upstreams only).
        self.native: Upstream | None = None
        if upstream.kind == "anthropic":
            self.native = upstream.view(headers=native_headers(upstream, ",".join(betas)))

    def __call__(
        self, upstream: Upstream, call: Call, body: bytes, ctx: RequestContext
    ) -> Awaitable[Reply | Failure]:
        native = ctx.native
        if native is not None and self.native is not None and call.raw_body() == ctx.body:
            return self._native(call, ctx, native)
        if call.route != CHAT:
            return _refused(_not_served(upstream, call.route))
        try:
            request = self.dialect.build_request(body, options=self.options)
        except TranslationError as exc:
            return _refused(translation_refused(exc))
        headers = [*self.base_headers, *request.headers]
        model = self.model or call.model
        pipe = _Translated(self.dialect, upstream.base + request.path, headers, request, model)
        client = _PipedClient(upstream.http, pipe)
        return attempt(upstream.view(client=client, stream_client=client), call, request.body, ctx)

    async def _native(self, call: Call, ctx: RequestContext, native: Native) -> Reply | Failure:
        """The caller's Messages request as it came, to this target."""
        assert self.native is not None
        body = patch_body(native.body, native.fields, self.model or call.model, False)
        view = self.native
        betas = caller_betas(ctx.headers)
        if betas:
            view = view.view(headers=native_headers(view, betas))
        messages = Call(MESSAGES, body, call.caller, call.headers)
        outcome = await attempt(view, messages, body, ctx)
        if isinstance(outcome, Reply):
            outcome.wire = "anthropic"
        return outcome


def native_headers(upstream: Upstream, betas: str) -> aifetch.Headers:
    """``upstream``'s headers with ``betas`` added to its ``anthropic-beta``."""
    headers = upstream.headers.copy()
    if betas:
        configured = headers.get("anthropic-beta")
        headers.set("anthropic-beta", f"{configured},{betas}" if configured else betas)
    return headers


def caller_betas(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's ``anthropic-beta`` values, joined (at most ``_MAX_BETA`` characters of
    printable ASCII): the one caller header a byte-exact Messages relay passes on, since
    the request it relays may use what they enable."""
    values = [v.decode("latin-1").strip() for n, v in headers if n == b"anthropic-beta"]
    joined = ",".join(v for v in values if v)
    if len(joined) > _MAX_BETA or not (joined.isascii() and joined.isprintable()):
        return ""
    return joined


class _PipedClient:
    """An upstream's client with one more pipe, for one call."""

    __slots__ = ("client", "pipes")

    def __init__(self, client: aifetch.AsyncClient, pipe: _Translated) -> None:
        self.client = client
        self.pipes = (pipe,)

    def fetch(
        self,
        resource: str,
        *,
        method: str = "GET",
        headers: aifetch.Headers | None = None,
        body: bytes | None = None,
        signal: aifetch.AbortSignal | None = None,
    ) -> Awaitable[aifetch.AsyncResponse]:
        return self.client.fetch(
            resource, method=method, headers=headers, body=body, signal=signal, pipes=self.pipes
        )


class _Translated:
    """A client pipe for one translated call: sends the provider's request, and answers
    with the provider's answer in OpenAI's shape."""

    __slots__ = ("dialect", "headers", "model", "request", "url")

    def __init__(
        self,
        dialect: Dialect,
        url: str,
        headers: list[tuple[str, str]],
        request: ProviderRequest,
        model: str,
    ) -> None:
        self.dialect = dialect
        self.url = url
        self.headers = headers
        self.request = request
        self.model = model

    async def __call__(
        self,
        request: aifetch.Request,
        next: Callable[[aifetch.Request], Awaitable[aifetch.AsyncResponse]],
    ) -> aifetch.AsyncResponse:
        response = await next(request.replace(url=self.url, headers=self.headers))
        if not response.ok:
            return await self._error(response)
        ctype = response.headers.get("content-type") or ""
        if self.request.stream and ctype.startswith("text/event-stream"):
            translator = self.dialect.stream_translator(
                model=self.model, include_usage=self.request.include_usage
            )
            return _reply(response, _translated(response, translator), _EVENT_STREAM)
        try:
            data = await response.bytes(limit=_MAX_BODY)
        except (aifetch.AifetchError, OSError) as exc:
            # Read where attempt() reads a body, the failure is named as it is there (a
            # reset, a timeout, a body too large), not as an upstream never reached.
            return _reply(response, _failing(exc), _JSON)
        try:
            body, _ = self.dialect.translate_response(data, model=self.model)
        except ValueError:  # msgspec.DecodeError: not the provider's documented shape
            err = codes.UPSTREAM_INVALID_BODY(
                f"the {self.dialect.name} upstream answered with a body it does not document"
            )
            return _reply(response, err.body(), _JSON, status=err.status)
        return _reply(response, body, _JSON)

    async def _error(self, response: aifetch.AsyncResponse) -> aifetch.AsyncResponse:
        try:
            data = await response.bytes(limit=_MAX_ERROR_BODY)
        except (aifetch.AifetchError, OSError):
            data = b""  # the status still says what went wrong
        status, body = self.dialect.translate_error(response.status, data)
        if status == 400 and any(data.find(mark) >= 0 for mark in _BAD_KEY):
            # Gemini answers a bad key 400 INVALID_ARGUMENT: it is the gateway's own key
            # that is wrong, not the caller's request (attempt makes this a 502).
            status = 401
        return _reply(response, body, _JSON, status=status)


async def _failing(exc: BaseException) -> AsyncIterator[bytes]:
    """A body whose read fails as the provider's did."""
    raise exc
    yield b""  # (an async generator)


async def _translated(
    response: aifetch.AsyncResponse, translator: StreamTranslator
) -> AsyncIterator[bytes]:
    """The provider's stream as OpenAI chunk bytes, read by read; ``close()`` at its clean
    end, so a stream cut short gets no ``[DONE]``."""
    decoder = SSEDecoder()
    feed = translator.feed
    trailing = 0
    try:
        async for data in response.body:
            if translator.done:
                trailing += len(data)  # the answer is over: drain a little, then let go
                if trailing > _MAX_TRAILING:
                    break
                continue
            out = b"".join([feed(event) for event in decoder.feed(data)])
            if out:
                yield out
            if translator.error is not None:
                return  # nothing follows an error event
        tail = translator.close()
        if tail:
            yield tail
    finally:
        await response.aclose()


def _reply(
    response: aifetch.AsyncResponse,
    body: bytes | AsyncIterator[bytes],
    content_type: str,
    status: int | None = None,
) -> aifetch.AsyncResponse:
    headers = aifetch.Headers(
        [(n, v) for n, v in response.headers.items() if n.lower() not in _REPLACED]
    )
    headers.append("content-type", content_type)
    request_id = response.headers.get("request-id")  # Anthropic's name for it
    if request_id is not None and "x-request-id" not in headers:
        headers.append("x-request-id", request_id)
    return aifetch.AsyncResponse(
        body, status=response.status if status is None else status, headers=headers
    )
