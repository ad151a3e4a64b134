"""Built-in pipes: ``async def pipe(request, next) -> response`` pieces for a client's chain.

Each function here returns a ``PipeSpec``, which ``AsyncClient`` and ``Client`` both turn
into their own implementation, so one ``pipes=[...]`` list serves either client. A pipe of
your own is any callable ``pipe(request, next)``: async for ``AsyncClient``, plain for
``Client``.
"""

from __future__ import annotations

import logging
from typing import Any

from ._headers import Headers, HeadersInit
from ._redact import REDACTED
from ._retry_timing import DEFAULT_RETRY_STATUSES
from ._timeouts import Timeout, TimeoutInit, to_timeout

__all__ = [
    "PipeSpec",
    "api_key",
    "base_url",
    "bearer",
    "headers",
    "log",
    "raise_for_status",
    "retry",
    "timeout",
]


_SECRET = frozenset({"headers", "api_key"})


class PipeSpec:
    """A built-in pipe and its options, not yet bound to a client flavour."""

    __slots__ = ("kind", "options")

    def __init__(self, kind: str, **options: Any) -> None:
        self.kind = kind
        self.options = options

    def __repr__(self) -> str:
        # Header values and a provider's api_key are keys: never shown.
        shown = {k: (REDACTED if k in _SECRET else v) for k, v in self.options.items()}
        return f"pipes.{self.kind}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def base_url(url: str) -> PipeSpec:
    """Put relative request URLs under ``url`` (its path kept: ``/v1`` + ``/models``)."""
    return PipeSpec("base_url", url=url)


def headers(values: HeadersInit, *, override: bool = False) -> PipeSpec:
    """Add headers to every request; a header the request already has wins unless
    ``override`` is set."""
    return PipeSpec("headers", headers=Headers(values), override=override)


def bearer(key: str) -> PipeSpec:
    """``Authorization: Bearer <key>`` on every request (redacted in every log and error)."""
    return headers({"Authorization": f"Bearer {key}"})


def api_key(header: str, key: str) -> PipeSpec:
    """An API key in a header of its own, e.g. ``api_key("api-key", key)`` for Azure."""
    return headers({header: key})


def retry(
    attempts: int = 3,
    *,
    statuses: frozenset[int] | set[int] = DEFAULT_RETRY_STATUSES,
    methods: frozenset[str] | set[str] | None = None,
    backoff: float = 0.5,
    cap: float = 8.0,
    max_server_wait: float = 60.0,
) -> PipeSpec:
    """Try up to ``attempts`` times in all (the first try included) on connect failures
    and on ``statuses``: ``attempts=1`` never retries.

    The wait is what the server asked for (``retry-after-ms``, ``Retry-After``, OpenAI's
    ``x-ratelimit-reset-*``, ``RateLimit-Reset``), else exponential backoff with full jitter
    from ``backoff`` seconds up to ``cap``. A server asking for more than
    ``max_server_wait`` gets its error raised at once, ``retry_after`` set. Retries stop
    when the next wait would pass the total deadline. Once a response is handed on, its
    body is the caller's and is never retried. ``methods=None`` retries every method,
    POST included, as AI SDKs do for their idempotent-by-design completions calls.
    """
    if attempts < 1:
        raise ValueError("attempts counts every try, the first included: it must be >= 1")
    return PipeSpec(
        "retry",
        attempts=attempts,
        statuses=frozenset(statuses),
        methods=None if methods is None else frozenset(m.upper() for m in methods),
        backoff=backoff,
        cap=cap,
        max_server_wait=max_server_wait,
    )


def timeout(value: TimeoutInit | Timeout) -> PipeSpec:
    """Set the phase timeouts of the requests that pass through (see ``aifetch.Timeout``)."""
    return PipeSpec("timeout", timeout=to_timeout(value))


def log(logger: logging.Logger | None = None, *, level: int = logging.INFO) -> PipeSpec:
    """One line per request: method, redacted URL, status, time, retries; the same fields
    as a dict in the record's ``aifetch`` attribute for structured handlers."""
    return PipeSpec("log", logger=logger, level=level)


def raise_for_status() -> PipeSpec:
    """Raise the ``HTTPError`` for a non-2xx response here, inside the chain, so the pipes
    outside it see an exception (the client raises after the chain by default)."""
    return PipeSpec("raise_for_status")
