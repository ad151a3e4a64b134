"""How the gateway runs: uvicorn with uvloop and httptools, and a graceful shutdown.

On SIGINT/SIGTERM uvicorn stops accepting and waits for open connections; the gateway
refuses new calls at once, lets streams in flight run for ``server.shutdown_grace``
seconds, then ends the rest with an SSE error event (DESIGN.md §3) so no caller is left
with a stream that silently stops.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import socket
from http import HTTPStatus
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ._app import GatewayApp, create_app
from ._config import GatewayConfig, default_config, is_loopback_host, load_config
from ._errors import GatewayError

__all__ = ["GatewayServer", "ListenError", "listen_socket", "startup_line", "uvicorn_config"]

log = logging.getLogger("aifetch.gateway")

# uvicorn's own deadline, past the gateway's: by then every stream got its error event.
_SHUTDOWN_MARGIN = 5.0


# A request head (request line and header fields) past this is refused with 431 (RFC 6585
# §5). uvicorn's httptools protocol sets no bound of its own, so a header flood would be
# buffered without limit (STYLE: bounded everything).
MAX_HEAD_BYTES = 64 * 1024
# Where uvicorn_config() leaves limits.request_timeout for the protocol (an attribute of
# uvicorn's Config survives the pickling that --workers does; a class made per config
# would not).
_REQUEST_TIMEOUT = "aifetch_request_timeout"


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with each request bounded in size and in time.

    - The head (request line and header fields) to ``MAX_HEAD_BYTES``: bytes are counted
      per read while a head is incomplete, so the bound holds to within one read; a read
      that completes the head may carry body bytes and is not refused.
    - The whole request to ``limits.request_timeout`` seconds: a timer starts when a read
      leaves a request unfinished (a head without its end, or a body still to come), and
      its end stops it. A request that arrives whole in one read, the usual case, never
      makes a timer. Past the deadline the caller gets 408 and the connection is closed,
      which also ends the gateway's wait for the body (``http.disconnect``).
    """

    _in_head = True
    _head_bytes = 0
    _body_pending = False
    _request_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            super().data_received(data)
        else:
            self._head_bytes += len(data)
            super().data_received(data)
            if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
                self._refuse_head()
                return
        if self._request_timer is None and (
            self._body_pending or (self._in_head and self._head_bytes)
        ):
            self._start_request_timer()

    def on_headers_complete(self) -> None:
        self._in_head, self._body_pending = False, True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next request on this connection starts from here.
        self._in_head, self._head_bytes, self._body_pending = True, 0, False
        self._stop_request_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_request_timer()
        super().connection_lost(exc)

    @property
    def _request_timeout(self) -> float | None:
        # None when uvicorn's config was not made by uvicorn_config(): no deadline then.
        return getattr(self.config, _REQUEST_TIMEOUT, None)

    def _start_request_timer(self) -> None:
        if self._request_timeout is not None:
            self._request_timer = self.loop.call_later(
                self._request_timeout, self._request_timed_out
            )

    def _stop_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # closed, or upgraded to another protocol (WebSocket)
        cycle = self.cycle
        if self.pipeline or (self._in_head and cycle is not None and not cycle.response_complete):
            # An earlier response still goes out (uvicorn stops reading a pipelined request
            # meanwhile): this request's time has not started, and a 408 written now would
            # land inside that response.
            self._start_request_timer()
            return
        timeout = self._request_timeout or 0.0
        log.warning("closed a connection whose request was not complete after %g s", timeout)
        if self._in_head or cycle is None or not cycle.response_started:
            message = f"The request was not complete within {timeout:g} seconds."
            self._answer_and_close(GatewayError(408, message, code="request_timeout"))
        else:
            self.transport.close()  # an answer is already on its way: only stop reading

    def _refuse_head(self) -> None:
        if self.transport.is_closing():
            return
        self._in_head = False
        log.warning("refused a request head over %d bytes", MAX_HEAD_BYTES)
        message = f"The request line and headers are larger than {MAX_HEAD_BYTES} bytes."
        self._answer_and_close(GatewayError(431, message, code="request_header_too_large"))

    def _answer_and_close(self, error: GatewayError) -> None:
        """Write ``error`` as a whole answer straight to the socket, then close it (for a
        request the ASGI app has not answered)."""
        body = error.body()
        reason = HTTPStatus(error.status).phrase.encode()
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (error.status, reason, len(body))
        )
        self.transport.write(head + body)
        self.transport.close()


async def _unset_app(scope: Any, receive: Any, send: Any) -> None:
    """Placeholder until ``GatewayServer.serve`` builds the app in its own process."""
    raise RuntimeError("the gateway app is built when the server starts")


def uvicorn_config(
    config: GatewayConfig, *, host: str, port: int, workers: int = 1
) -> uvicorn.Config:
    uv = uvicorn.Config(
        _unset_app,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=BoundedHeadProtocol,
        interface="asgi3",
        lifespan="on",
        # The access log is the gateway's own JSON line; uvicorn's would duplicate it.
        access_log=False,
        # X-Forwarded-* must not change who the caller is (loopback-only rule, logs).
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=math.ceil(config.server.shutdown_grace + _SHUTDOWN_MARGIN),
        log_config=None,
    )
    setattr(uv, _REQUEST_TIMEOUT, config.limits.request_timeout)
    return uv


def startup_line(config: GatewayConfig, host: str, port: int) -> str:
    open_note = (
        f"{len(config.callers)} caller key(s)"
        if config.callers
        else "no callers configured: loopback only, any local process may call it"
    )
    return (
        f"aifetch gateway listening on http://{host}:{port}/v1 — "
        f"models: {', '.join(config.models)}; {open_note}"
    )


class GatewayServer(uvicorn.Server):
    """A uvicorn server that builds the gateway in the serving process and shuts it down
    gracefully. Picklable before it starts, so ``--workers`` can spawn it."""

    def __init__(self, config: uvicorn.Config, gateway: GatewayConfig) -> None:
        super().__init__(config)
        self.gateway_config = gateway
        self.app: GatewayApp | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        if self.app is None:
            self.app = create_app(self.gateway_config)
            self.config.app = self.app
        await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.bound_address()
            log.info(startup_line(self.gateway_config, host, port))

    def bound_address(self) -> tuple[str, int]:
        for server in self.servers:
            for sock in server.sockets:
                address = sock.getsockname()
                return str(address[0]), int(address[1])
        return self.config.host, self.config.port

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.app is not None:
            self.app.begin_shutdown()
        await super().shutdown(sockets)


def check_exposure(config: GatewayConfig, host: str) -> None:
    """Refuse a non-loopback address when no caller keys are configured."""
    if not config.callers and not is_loopback_host(host):
        raise ValueError(
            f"refusing to listen on {host}: no callers are configured, so anyone who can reach "
            "it could spend the upstream keys. Add 'callers' to the config, or listen on 127.0.0.1."
        )


_CONFIG_ENV = "AIFETCH_GATEWAY_CONFIG"


def worker_app() -> GatewayApp:
    """The app factory each ``--workers`` process runs (uvicorn's own server there: the
    streams still running at uvicorn's deadline are cancelled, without an error event)."""
    if not logging.getLogger().handlers:
        # A spawned worker starts without the parent's logging set-up.
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = os.environ.get(_CONFIG_ENV)
    return create_app(load_config(path) if path else default_config())


class ListenError(Exception):
    """The address cannot be listened on (in use, not permitted, not this machine's)."""


# uvicorn's default; connections wait here until a worker (or the server) accepts them.
_BACKLOG = 2048


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, made before anything announces the
    gateway: a port in use is then one clear error, not a failure after the app started
    (uvicorn binds after the lifespan's "Application startup complete")."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As uvicorn does: a restart may bind while old connections sit in TIME_WAIT (a
        # socket still listening there keeps the port refused).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        hint = (
            "; is another server running there? Choose another --port"
            if exc.errno == errno.EADDRINUSE
            else ""
        )
        raise ListenError(f"cannot listen on {host}:{port}: {reason}{hint}") from None
    sock.set_inheritable(True)  # handed to worker processes with --workers
    return sock


def run(
    config: GatewayConfig, *, host: str, port: int, workers: int = 1, path: str | None = None
) -> None:
    """Serve until interrupted (blocking). ``path``: the config file, for worker processes.
    Raises ``ListenError`` before anything starts when the address cannot be used."""
    check_exposure(config, host)
    uv = uvicorn_config(config, host=host, port=port, workers=workers)
    sock = listen_socket(host, port)
    if workers <= 1:
        GatewayServer(uv, config).run(sockets=[sock])
        return
    from uvicorn.supervisors import Multiprocess

    os.environ[_CONFIG_ENV] = path or ""
    uv.app = "aifetch.gateway._server:worker_app"
    uv.factory = True
    log.info(startup_line(config, host, sock.getsockname()[1]) + f" ({workers} workers)")
    Multiprocess(uv, sockets=[sock]).run()
