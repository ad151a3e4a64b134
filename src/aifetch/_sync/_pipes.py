# Generated from src/aifetch/_async/_pipes.py by scripts/unasync.py: do not edit.
"""The pipe chain, and the built-in pipes' sync bodies (``aifetch.pipes`` makes them)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from .._errors import NetworkError, TimeoutError
from .._headers import Headers
from .._redact import redact_url
from .._retry_timing import decide_retry
from .._urls import join_base
from ..pipes import PipeSpec
from ._io import sleep

if TYPE_CHECKING:
    from .._request import Request
    from .._timeouts import Timeout
    from ._response import Response

__all__ = ["Next", "Pipe", "bind", "fold"]

Next: TypeAlias = "Callable[[Request], Response]"
Pipe: TypeAlias = "Callable[[Request, Next], Response] | PipeSpec"


class _Link:
    """One pipe bound to the rest of the chain. Calling it returns the pipe's own
    awaitable, so a chain of N pipes adds no coroutine frames of its own."""

    __slots__ = ("next", "pipe")

    def __init__(
        self, pipe: Callable[[Request, Next], Response], next: Next
    ) -> None:
        self.pipe = pipe
        self.next = next

    def __call__(self, request: Request) -> Response:
        return self.pipe(request, self.next)


def fold(
    pipes: Sequence[Callable[[Request, Next], Response]], send: Next
) -> Next:
    """Build the chain once: the first pipe is outermost, ``send`` innermost."""
    handler = send
    for pipe in reversed(pipes):
        handler = _Link(pipe, handler)
    return handler


def bind(pipe: Pipe) -> Callable[[Request, Next], Response]:
    """A built-in pipe's spec becomes its sync implementation; user pipes pass as they are."""
    if isinstance(pipe, PipeSpec):
        return _BUILTINS[pipe.kind](**pipe.options)
    return pipe


class _BaseURL:
    def __init__(self, url: str) -> None:
        self.url = url

    # Plain def returning next's awaitable: the pipes that only change the request add no
    # coroutine frame of their own to every request.
    def __call__(self, request: Request, next: Next) -> Response:
        if "://" not in request.url:
            request = request.replace(url=join_base(self.url, request.url))
        return next(request)


class _DefaultHeaders:
    def __init__(self, headers: Headers, override: bool) -> None:
        self.headers = headers
        self.override = override

    def __call__(self, request: Request, next: Next) -> Response:
        request.headers._merge_from(self.headers, override=self.override)
        return next(request)


class _Timeout:
    def __init__(self, timeout: Timeout) -> None:
        self.timeout = timeout

    def __call__(self, request: Request, next: Next) -> Response:
        request.timeout = self.timeout
        deadline = self.timeout.deadline()
        if deadline is not None and (request.deadline is None or deadline < request.deadline):
            request.deadline = deadline
        return next(request)


class _Retry:
    def __init__(
        self,
        attempts: int,
        statuses: frozenset[int],
        methods: frozenset[str] | None,
        backoff: float,
        cap: float,
        max_server_wait: float,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.attempts = attempts
        self.statuses = statuses
        self.methods = methods
        self.backoff = backoff
        self.cap = cap
        self.max_server_wait = max_server_wait
        self.rand = rand

    def _decide(
        self,
        request: Request,
        attempt: int,
        status: int | None,
        kind: str | None,
        get_header: Callable[[str], str | None] | None,
    ) -> Any:
        remaining = None if request.deadline is None else request.deadline - time.monotonic()
        return decide_retry(
            attempt=attempt,
            max_retries=self.attempts - 1,  # attempts counts the first try too
            status=status,
            error_kind=kind,
            method=request.method,
            retry_statuses=self.statuses,
            retry_methods=self.methods,
            get_header=get_header,
            base=self.backoff,
            cap=self.cap,
            max_server_wait=self.max_server_wait,
            now=time.time(),
            remaining=remaining,
            rand=self.rand,
        )

    def __call__(self, request: Request, next: Next) -> Response:
        attempt = 0
        while True:
            try:
                response = next(request)
            except (NetworkError, TimeoutError) as exc:
                kind = _error_kind(exc)
                if kind is None or not request.replayable:
                    raise
                decision = self._decide(request, attempt, None, kind, None)
                if not decision.retry:
                    raise
            else:
                if response.ok or response.status not in self.statuses or not request.replayable:
                    response.retries_taken = attempt
                    return response
                decision = self._decide(
                    request, attempt, response.status, None, response.headers.get
                )
                if not decision.retry:
                    response.retries_taken = attempt
                    asked = decision.server_asked
                    if asked is not None and asked > self.max_server_wait:
                        # The server asked for a longer wait than we allow: say so, loudly,
                        # rather than hand back a 429 that looks like retrying gave up.
                        response.raise_for_status(
                            note=f"server asked to wait {asked:g} s, more than "
                            f"max_server_wait={self.max_server_wait:g} s"
                        )
                    return response
                response.close()
            sleep(decision.delay, request.signal)
            attempt += 1


def _error_kind(exc: NetworkError | TimeoutError) -> str | None:
    if isinstance(exc, TimeoutError):
        return {"connect": "timeout_connect", "first_byte": "timeout_first_byte"}.get(exc.phase)
    # A body that broke mid-read was already handed to the caller: never retried here.
    return {"connect": "connect", "send": "network"}.get(exc.phase)


class _Log:
    def __init__(self, logger: logging.Logger | None, level: int) -> None:
        self.logger = logger or logging.getLogger("aifetch")
        self.level = level

    def __call__(self, request: Request, next: Next) -> Response:
        if not self.logger.isEnabledFor(self.level):
            return next(request)
        started = time.perf_counter()
        url = redact_url(request.url)
        try:
            response = next(request)
        except Exception as exc:
            ms = (time.perf_counter() - started) * 1000
            self.logger.log(
                self.level,
                "%s %s failed after %.1f ms: %s: %s",
                request.method,
                url,
                ms,
                type(exc).__name__,
                exc,
                extra={
                    "aifetch": {
                        "method": request.method,
                        "url": url,
                        "error": type(exc).__name__,
                        "ms": round(ms, 3),
                    }
                },
            )
            raise
        ms = (time.perf_counter() - started) * 1000
        self.logger.log(
            self.level,
            "%s %s -> %d %s in %.1f ms (retries=%d)",
            request.method,
            url,
            response.status,
            response.status_text,
            ms,
            response.retries_taken,
            extra={
                "aifetch": {
                    "method": request.method,
                    "url": url,
                    "status": response.status,
                    "ms": round(ms, 3),
                    "retries": response.retries_taken,
                }
            },
        )
        return response


class _RaiseForStatus:
    def __call__(self, request: Request, next: Next) -> Response:
        response = next(request)
        if not response.ok and response.type != "opaqueredirect":
            response.raise_for_status()
        return response


def _provider(**options: Any) -> Callable[[Request, Next], Response]:
    # Imported on first use: the dialects' Structs and tables cost ~40 ms to import, which
    # a client without a provider pipe should not pay.
    from ._provider import ProviderPipe

    return ProviderPipe(**options)


_BUILTINS: dict[str, Callable[..., Callable[[Request, Next], Response]]] = {
    "base_url": _BaseURL,
    "headers": _DefaultHeaders,
    "timeout": _Timeout,
    "retry": _Retry,
    "log": _Log,
    "raise_for_status": _RaiseForStatus,
    "provider": _provider,
}
