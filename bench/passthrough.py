"""The bare passthrough proxy: the floor any Python gateway on this stack can reach.

Raw ASGI on uvicorn (uvloop + httptools) relaying every request to one upstream
through one aiohttp ``ClientSession``: no auth, no parsing, no accounting, no
metrics. The aifetch gateway's overhead is judged against this, so it must stay
this small: anything added here hides the gateway's own cost.

    python bench/passthrough.py --upstream http://127.0.0.1:8900 --port 8901

prints ``READY http://127.0.0.1:8901`` once it is listening.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import uvicorn
import uvloop

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Request headers worth relaying; hop-by-hop ones (RFC 9110 §7.6.1) and Host are not.
_FORWARD = frozenset({b"authorization", b"content-type", b"accept"})


class Passthrough:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._relay(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # One pool for the process; no per-host cap below the load's concurrency.
                connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
                self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _relay(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.session is not None
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k in _FORWARD}
        url = self.upstream + scope["path"]
        async with self.session.request(
            scope["method"], url, data=bytes(body), headers=headers
        ) as resp:
            out = [(b"content-type", resp.headers.get("content-type", "").encode())]
            if resp.content_length is not None:
                # A sized body is read whole and sent in one message: one ASGI send
                # instead of several, as any proxy would for a small JSON answer.
                data = await resp.read()
                out.append((b"content-length", str(len(data)).encode()))
                await send({"type": "http.response.start", "status": resp.status, "headers": out})
                await send({"type": "http.response.body", "body": data, "more_body": False})
                return
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            # A stream is relayed read by read as it arrives, never collected.
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _AnnouncingServer(uvicorn.Server):
    """Prints ``READY <url>`` once listening: uvicorn has no hook for a parent to wait on."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(f"READY http://{self.config.host}:{self.config.port}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/passthrough.py")
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8900")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8901)
    args = parser.parse_args()
    config = uvicorn.Config(
        Passthrough(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )
    uvloop.run(_AnnouncingServer(config).serve())


if __name__ == "__main__":
    main()
