"""Redis and PostgreSQL for the tests: the machine's own when they answer on their usual
ports, else throwaway ones started here (and stopped by PID at exit).

- ``redis_url()``: ``redis://127.0.0.1:6379`` if it answers PING, else a private
  ``redis-server`` on a free port (Debian's ``redis-server`` installed if missing).
- ``RedisServer``: a private ``redis-server`` a test starts, stops and restarts on the same
  port (for the Redis-down tests).
- ``postgres_dsn()``: ``postgresql://postgres@127.0.0.1:5432/test`` if it accepts
  connections, else a cluster made with ``initdb`` in a temporary folder and started on a
  free port (Debian's ``postgresql`` installed if missing). PostgreSQL refuses to run as
  root, so as root the cluster runs as the ``postgres`` user.

A service that cannot be had raises ``ServiceError``: the run fails, nothing is skipped.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from tests.support.system import ensure_command

__all__ = [
    "PostgresCluster",
    "RedisServer",
    "ServiceError",
    "free_port",
    "postgres_dsn",
    "redis_url",
]

_START_TIMEOUT = 30.0
_LOCK = threading.Lock()
_shared: dict[str, str] = {}
_PG_BIN_DIRS = tuple(f"/usr/lib/postgresql/{v}/bin" for v in range(20, 11, -1))


class ServiceError(RuntimeError):
    """A service the tests need could not be reached or started."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_pings(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _redis_answers(port: int) -> bool:
    """PONG, or (a server with a password) the error that asks for one."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
            return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
    except OSError:
        return False


def _accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RedisServer:
    """A private ``redis-server`` on 127.0.0.1 (no persistence), stopped by its PID."""

    def __init__(self, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.extra = extra  # more redis-server options (``--requirepass``, ...)
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="aifetch-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> RedisServer:
        binary = ensure_command("redis-server", "redis-server")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", self._dir, "--protected-mode", "no", *self.extra]
        self._proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while not _redis_answers(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop it by PID (SIGKILL: like a crash, nothing flushed)."""
        if self._proc is not None:
            _stop(self._proc, signal.SIGKILL)
            self._proc = None

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open and nothing answers."""
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGCONT)

    def close(self) -> None:
        self.resume()
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def redis_url() -> str:
    """The Redis the tests share (one per run)."""
    with _LOCK:
        if "redis" not in _shared:
            if _redis_pings(6379):
                _shared["redis"] = "redis://127.0.0.1:6379/0"
            else:
                server = RedisServer().start()
                atexit.register(server.close)
                _shared["redis"] = server.url
        return _shared["redis"]


class PostgresCluster:
    """A throwaway PostgreSQL cluster (``initdb`` in a temporary folder, trust auth) on a
    free port, with a database ``test``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = tempfile.mkdtemp(prefix="aifetch-pg-")
        self.data = os.path.join(self.root, "data")
        self._proc: subprocess.Popen[bytes] | None = None

    def _owner(self) -> dict[str, int]:
        """``user``/``group`` for subprocess: PostgreSQL never runs as root."""
        if os.geteuid() != 0:
            return {}
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise ServiceError("PostgreSQL refuses root and there is no 'postgres' user") from None
        os.chown(self.root, owner.pw_uid, owner.pw_gid)
        return {"user": owner.pw_uid, "group": owner.pw_gid}

    def start(self) -> PostgresCluster:
        initdb = ensure_command("initdb", "postgresql", paths=_PG_BIN_DIRS)
        postgres = os.path.join(os.path.dirname(initdb), "postgres")
        owner = self._owner()
        env = {**os.environ, "LC_ALL": "C"}
        result = subprocess.run(
            [initdb, "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync"],
            capture_output=True,
            env=env,
            timeout=120,
            check=False,
            **owner,  # type: ignore[arg-type]
        )
        if result.returncode != 0:
            raise ServiceError(f"initdb failed: {result.stderr.decode(errors='replace')[-500:]}")
        options = ["-p", str(self.port), "-k", self.root, "-c", "listen_addresses=127.0.0.1"]
        options += ["-c", "fsync=off"]
        self._proc = subprocess.Popen(
            [postgres, "-D", self.data, *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            **owner,  # type: ignore[arg-type]
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._ready(postgres):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"PostgreSQL did not start on port {self.port}")
            time.sleep(0.1)
        return self

    def _ready(self, postgres: str) -> bool:
        if not _accepts(self.port):
            return False
        psql = os.path.join(os.path.dirname(postgres), "psql")
        if not os.path.exists(psql):
            psql = shutil.which("psql") or psql
        result = subprocess.run(
            [
                psql,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                "CREATE DATABASE test",
            ],
            capture_output=True,
            timeout=30,
        )
        return result.returncode == 0 or b"already exists" in result.stderr

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"

    def stop(self) -> None:
        if self._proc is not None:
            _stop(self._proc, signal.SIGINT)  # "fast" shutdown
            self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def postgres_dsn() -> str:
    """The PostgreSQL the tests share (one per run)."""
    with _LOCK:
        if "postgres" not in _shared:
            if _accepts(5432):
                _shared["postgres"] = "postgresql://postgres@127.0.0.1:5432/test"
            else:
                cluster = PostgresCluster().start()
                atexit.register(cluster.close)
                _shared["postgres"] = cluster.dsn
        return _shared["postgres"]
