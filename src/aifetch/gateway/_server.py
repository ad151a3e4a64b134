"""How the gateway runs: uvicorn with uvloop and httptools, and a graceful shutdown.

On SIGINT/SIGTERM uvicorn stops accepting and waits for open connections; the gateway
refuses new calls at once, lets streams in flight run for ``server.shutdown_grace``
seconds, then ends the rest with an SSE error event (docs/ARCHITECTURE.md) so no caller is left
with a stream that silently stops. With ``--workers N`` the same holds in every worker,
and each worker's ``/metrics`` shows the figures of all of them.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import socket
import tempfile
from typing import Any

import uvicorn

from ._app import GatewayApp, create_app
from ._config import GatewayConfig, default_config, is_loopback_host, load_config
from ._protocol import (
    MAX_CONNECTIONS_ATTR,
    REQUEST_TIMEOUT_ATTR,
    BoundedHeadProtocol,
    begin_shutdown,
    connection_cap,
)
from .governance import governance_active

__all__ = ["GatewayServer", "ListenError", "listen_socket", "startup_line", "uvicorn_config"]

log = logging.getLogger("aifetch.gateway")

# uvicorn's own deadline, past the gateway's: by then every stream got its error event.
_SHUTDOWN_MARGIN = 5.0


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
    setattr(uv, REQUEST_TIMEOUT_ATTR, config.limits.request_timeout)
    pools = sum(u.max_connections for u in config.upstreams.values() if u.kind != "mock")
    cap, fd_limit = connection_cap(config.limits.max_connections, pools)
    if fd_limit is not None:
        log.info(
            "limits.max_connections %d lowered to %d caller connections: the file-descriptor "
            "limit is %d and the upstream pools hold up to %d (raise it with `ulimit -n`)",
            config.limits.max_connections,
            cap,
            fd_limit,
            pools,
        )
    setattr(uv, MAX_CONNECTIONS_ATTR, cap)
    return uv


def startup_line(config: GatewayConfig, host: str, port: int) -> str:
    open_note = (
        f"{len(config.callers)} caller key(s)"
        if config.callers
        else "no callers configured: loopback only, any local process may call it"
    )
    if config.keys is not None:
        open_note += " and virtual keys"
    open_note += _governance_note(config)
    playground = (
        f"; playground: http://{host}:{port}/playground" if config.server.playground else ""
    )
    return (
        f"aifetch gateway listening on http://{host}:{port}/v1 — "
        f"models: {', '.join(config.models)}; {open_note}{playground}"
    )


def _governance_note(config: GatewayConfig) -> str:
    """Where limits and the ledger live, when governance is configured (no URL: it may
    hold a password)."""
    parts = []
    if governance_active(config):
        parts.append("limits on " + ("this process" if config.state == "memory" else "Redis"))
    if config.ledger is not None:
        kind = "SQLite" if config.ledger.startswith("sqlite") else "PostgreSQL"
        parts.append(f"ledger on {kind}")
    return f"; {', '.join(parts)}" if parts else ""


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
            begin_shutdown(self.app)
        await super().shutdown(sockets)


def check_exposure(config: GatewayConfig, host: str) -> None:
    """Refuse a non-loopback address when no caller keys (nor virtual keys) are
    configured."""
    if not config.callers and config.keys is None and not is_loopback_host(host):
        raise ValueError(
            f"refusing to listen on {host}: no callers are configured, so anyone who can reach "
            "it could spend the upstream keys. Add 'callers' to the config, or listen on 127.0.0.1."
        )


_CONFIG_ENV = "AIFETCH_GATEWAY_CONFIG"
_METRICS_ENV = "AIFETCH_GATEWAY_METRICS_DIR"


def worker_app() -> GatewayApp:
    """The app factory each ``--workers`` process runs, on uvicorn's own server there.

    Its connections begin the app's graceful shutdown (``BoundedHeadProtocol.shutdown``),
    so streams end with the error event as in a single process, and its metrics are
    shared with the other workers' through the parent's directory."""
    if not logging.getLogger().handlers:
        # A spawned worker starts without the parent's logging set-up.
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = os.environ.get(_CONFIG_ENV)
    app = create_app(load_config(path) if path else default_config())
    directory = os.environ.get(_METRICS_ENV)
    if directory:
        app.metrics.share(directory)
    return app


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
    # Where the workers leave their metrics for each other (see Metrics.share).
    directory = tempfile.mkdtemp(prefix="aifetch-metrics-")
    os.environ[_METRICS_ENV] = directory
    uv.app = "aifetch.gateway._server:worker_app"
    uv.factory = True
    log.info(startup_line(config, host, sock.getsockname()[1]) + f" ({workers} workers)")
    try:
        Multiprocess(uv, sockets=[sock]).run()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
