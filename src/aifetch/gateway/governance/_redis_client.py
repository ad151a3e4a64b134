"""The state store's Redis client: one pipelined connection, RESP2 out, hiredis's parser
in; just the calls the state needs (``PING``, ``EVALSHA`` with its ``EVAL`` fallback).

Why not redis-py's asyncio client: measured with valgrind on this project's interpreter
(bench/README.md, governance), one ``PING`` through ``redis.asyncio.Redis`` took ~221k
instructions of the gateway's CPU (its pool, retry wrapper, event dispatch, a timeout per
read) and an admission's ``EVALSHA`` ~535k, against ~12k for the round trip on a bare
``asyncio.Protocol``: with limits on Redis the gateway spent more on its Redis client than
on everything else it does for a request. Here a call is a write and a future:

- Commands are pipelined on one connection and their replies matched in order (RESP
  replies come back in the order commands were sent), so concurrent admissions share it
  without a pool; at most ``MAX_PENDING`` wait at once (past it a call fails at once).
- One timer per connection, not one per call, sees the oldest call waiting past
  ``timeout``: the connection is then dropped and every call on it fails, so no request
  waits on a Redis that stopped answering. The next call connects again.
- Scripts go by ``EVALSHA``; ``NOSCRIPT`` (Redis restarted, its script cache empty) sends
  the script itself once with ``EVAL``, which caches it again.

URLs: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS, the system's CA
store), ``unix://[[user]:password@]/path/to.sock[?db=N]``. Errors: ``ConnectionError`` and
``TimeoutError`` (both ``OSError``) for the connection, ``ReplyError`` for an error reply;
no message carries the URL's password.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from ._errors import MissingPackageError

try:
    import hiredis
except ImportError:  # pragma: no cover - the redis extra is part of the test set-up
    raise MissingPackageError(
        "state: redis://... needs the 'hiredis' package: pip install 'aifetch[redis]'"
    ) from None

__all__ = ["MAX_PENDING", "RedisClient", "ReplyError", "encode", "encode_parts", "script_sha"]

# Calls waiting for their replies on the connection at once.
MAX_PENDING = 4096


class ReplyError(Exception):
    """Redis answered a call with an error reply."""


def encode(*args: bytes | str | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    return b"*%d\r\n" % len(args) + encode_parts(*args)


def encode_parts(*args: bytes | str | int) -> bytes:
    """Bulk strings without the array's header: the parts of a command whose head is made
    once (``b"*%d\r\n" % count`` + the constant arguments) and its end per call."""
    out = []
    for arg in args:
        data = (
            arg.encode() if isinstance(arg, str) else arg if isinstance(arg, bytes) else b"%d" % arg
        )
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()  # what Redis names scripts by


class _Connection(asyncio.Protocol):
    """One connection: each call's future waits in ``pending`` for its reply, in order."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._reader = hiredis.Reader()
        self._pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self.broken = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but write and abort.)
        self._transport = cast(asyncio.Transport, transport)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        if self.broken or self._transport is None:
            raise ConnectionError("the connection to the state store is closed")
        if len(self._pending) >= MAX_PENDING:
            raise ConnectionError("too many calls are waiting for the state store")
        future = self._loop.create_future()
        now = self._loop.time()
        self._pending.append((future, now))
        self._transport.write(command)
        if self._timer is None:
            self._timer = self._loop.call_at(now + self._timeout, self._check)
        return future

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        pending = self._pending
        while (reply := reader.gets()) is not False:
            if not pending:  # a reply to nothing: the stream is out of step
                self._break(ConnectionError("the state store sent an unexpected reply"))
                return
            future, _ = pending.popleft()
            if future.done():  # its caller went away; the reply still had to be read
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(ReplyError(str(reply)))
            else:
                future.set_result(reply)

    def _check(self) -> None:
        """The oldest call has waited ``timeout``: drop the connection; else look again
        when it will have."""
        self._timer = None
        if not self._pending or self.broken:
            return
        due = self._pending[0][1] + self._timeout
        if due <= self._loop.time():
            self._break(TimeoutError(f"the state store did not answer within {self._timeout}s"))
        else:
            self._timer = self._loop.call_at(due, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        self._break(ConnectionError("the state store closed the connection"))

    def _break(self, error: Exception) -> None:
        self.broken = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            future, _ = self._pending.popleft()
            if not future.done():
                future.set_exception(error)
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        self._break(ConnectionError("the state store client is closed"))


class RedisClient:
    """Calls to one Redis over one connection, made when first needed and again after it
    broke (a call then connects first, within ``timeout``)."""

    def __init__(self, url: str, *, timeout: float) -> None:
        parts = urlsplit(url)
        self._timeout = timeout
        self._unix = parts.scheme == "unix"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._path = parts.path
        self._tls = ssl.create_default_context() if parts.scheme == "rediss" else None
        self._user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        db = parse_qs(parts.query).get("db", [""])[0]
        if not self._unix:
            db = parts.path.lstrip("/") or db
        self._db = int(db) if db.isdigit() else 0
        self._conn: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None

    def __repr__(self) -> str:
        where = self._path if self._unix else f"{self._host}:{self._port}"
        return f"RedisClient({where}, db={self._db})"  # never the password

    async def call(self, command: bytes) -> Any:
        """Send an ``encode``d command and return its reply (``ReplyError`` raised)."""
        conn = self._conn
        if conn is None or conn.broken:
            conn = await self._connected()
        return await conn.send(command)

    async def ping(self) -> None:
        await self.call(_PING)

    async def script(self, sha: str, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script by its SHA, sending it whole if Redis does not know it."""
        return await self.run_script(
            encode(b"EVALSHA", sha, len(keys), *keys, *args),
            encode(b"EVAL", script, len(keys), *keys, *args),
        )

    async def run_script(self, by_sha: bytes, whole: bytes) -> Any:
        """``by_sha`` (an ``EVALSHA`` command); ``whole`` (the same as ``EVAL``) when Redis
        answers ``NOSCRIPT``."""
        try:
            return await self.call(by_sha)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.call(whole)

    async def _connected(self) -> _Connection:
        # Concurrent calls share one attempt.
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect())
            # Read by whoever waits; if they all went away, read here (no stray warning).
            self._connecting.add_done_callback(_retrieve)
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(self._timeout)
        if self._unix:
            made = loop.create_unix_connection(lambda: conn, self._path)
        else:
            made = loop.create_connection(lambda: conn, self._host, self._port, ssl=self._tls)
        try:
            await asyncio.wait_for(made, self._timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no connection to the state store within {self._timeout}s"
            ) from None
        try:
            if self._password is not None:
                user = () if self._user is None else (self._user,)
                await conn.send(encode(b"AUTH", *user, self._password))
            if self._db:
                await conn.send(encode(b"SELECT", self._db))
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    async def aclose(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


_PING = encode(b"PING")


def _retrieve(task: asyncio.Task[_Connection]) -> None:
    if not task.cancelled():
        task.exception()
