"""aifetch: fetch-shaped HTTP for AI model APIs — typed errors, pipes, streams, a gateway.

One front door: everything public is importable from here (plus the ``aifetch.pipes``,
``aifetch.providers``, ``aifetch.sse``, ``aifetch.openai`` and ``aifetch.gateway`` modules).
"""

from typing import TYPE_CHECKING, Any

from . import pipes
from ._abort import AbortController, AbortSignal
from ._async._response import AsyncResponse
from ._errors import (
    AbortError,
    AifetchError,
    AuthenticationError,
    BadRequestError,
    BodyTooLargeError,
    BodyUsedError,
    ConflictError,
    ContentTypeError,
    EventTooLargeError,
    HTTPError,
    IncompleteStreamError,
    InternalServerError,
    InvalidChunkError,
    InvalidURLError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    SSEError,
    StreamError,
    TimeoutError,
    ToolCallArgumentsError,
    UnprocessableEntityError,
)
from ._headers import Headers
from ._request import Request
from ._timeouts import Timeout

if TYPE_CHECKING:
    from ._async._client import AsyncClient
    from ._async._eventsource import AsyncEventSource
    from ._fetch import fetch
    from ._sync._client import Client
    from ._sync._eventsource import EventSource
    from ._sync._response import Response

__version__ = "0.1.0"

# Each client's stack loads on first use: the async one pulls in aiohttp (~240 ms to
# import), the sync one urllib3 and ssl (~50 ms, ~4 MB that a gateway never uses). So the
# sync client, the SSE decoder and the OpenAI types import without aiohttp, and the
# gateway without urllib3.
_LAZY = {
    "AsyncClient": "._async._client",
    "AsyncEventSource": "._async._eventsource",
    "fetch": "._fetch",
    "Client": "._sync._client",
    "EventSource": "._sync._eventsource",
    "Response": "._sync._response",
}


def __getattr__(name: str) -> Any:
    if name == "providers":  # a submodule, loaded on first use like the names above
        import importlib

        return importlib.import_module(".providers", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aifetch' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "AbortController",
    "AbortError",
    "AbortSignal",
    "AifetchError",
    "AsyncClient",
    "AsyncEventSource",
    "AsyncResponse",
    "AuthenticationError",
    "BadRequestError",
    "BodyTooLargeError",
    "BodyUsedError",
    "Client",
    "ConflictError",
    "ContentTypeError",
    "EventSource",
    "EventTooLargeError",
    "HTTPError",
    "Headers",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidChunkError",
    "InvalidURLError",
    "NetworkError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedirectError",
    "Request",
    "Response",
    "SSEError",
    "StreamError",
    "Timeout",
    "TimeoutError",
    "ToolCallArgumentsError",
    "UnprocessableEntityError",
    "__version__",
    "fetch",
    "pipes",
]
