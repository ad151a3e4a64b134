"""Governed gateways as real processes: ``aifetch serve`` children sharing one config file,
and the backends they share it on.

- ``Backend``: where the fleet keeps its state and ledger. ``redis+postgresql`` runs two
  gateway processes on one Redis (a key prefix of the test's own) and one PostgreSQL
  schema (migrated with ``aifetch ledger migrate``, as a deployment does);
  ``memory+sqlite`` runs one process with nothing to connect to.
- ``fleet(...)``: the gateways up (each started in its own session, on a free port, the
  built-in mock as the upstream so each process is self-contained), their URLs yielded;
  stopped by PID with SIGTERM (a graceful shutdown: the ledger is flushed), and each must
  have shut down gracefully.
- ``usage_report(...)``: ``aifetch usage`` run as the command it is, its JSON decoded.
- ``room_in_minute(seconds)``: wait, if need be, for a UTC minute with that much of it
  left, so a run that counts per-minute limits is not split by the window's turn.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.child import LISTENING, ROOT, SERVE, Child

START_TIMEOUT = 30.0

MODEL = "m1"
# USD per million tokens: a call of a few dozen tokens costs a few thousandths of a USD.
PRICE = {"input": 100.0, "output": 200.0}


@dataclass
class Backend:
    name: str
    sections: dict[str, Any]  # the config's state, ledger and governance keys
    processes: int
    redis_url: str | None = None
    prefix: str | None = None
    postgres: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def write_config(
    path: Path,
    backend: Backend,
    *,
    callers: list[dict[str, Any]] | None = None,
    mock: dict[str, Any] | None = None,
    **sections: Any,
) -> Path:
    raw: dict[str, Any] = {
        "upstreams": {"mock": {"kind": "mock", "mock": mock or {}}},
        "models": {MODEL: {"targets": [{"upstream": "mock"}], "price": PRICE}},
        "server": {"access_log": False, "heartbeat": 0, "shutdown_grace": 5},
        **backend.sections,
        **sections,
    }
    if callers:
        raw["callers"] = callers
    governance = {**backend.sections.get("governance", {}), **sections.get("governance", {})}
    if governance:
        raw["governance"] = governance
    path.write_text(yaml.safe_dump(raw))
    return path


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``aifetch <args>`` as a command (``python -m aifetch.gateway._cli``)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    return subprocess.run(
        [sys.executable, "-m", "aifetch.gateway._cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def migrate(config: Path, backend: Backend) -> None:
    if backend.postgres:
        done = cli("ledger", "migrate", "--config", str(config))
        assert done.returncode == 0, done.stderr


@contextlib.contextmanager
def fleet(config: Path, count: int, logs: Path, *, workers: int = 1) -> Iterator[list[str]]:
    """``count`` gateways on ``config``; their base URLs (``http://127.0.0.1:<port>``)."""
    children: list[Child] = []
    try:
        for i in range(count):
            argv = [*SERVE, "--config", str(config)]
            argv += ["--port", "0", "--workers", str(workers)]
            children.append(Child(f"gateway {i}", argv, logs / f"gateway-{i}.log"))
        urls = []
        for child in children:
            port = child.wait_for(LISTENING, START_TIMEOUT).group(1)
            urls.append(f"http://127.0.0.1:{port}")
        if workers > 1:
            for child in children:
                _wait_output(child, "Application startup complete", workers)
        yield urls
    finally:
        codes = [(child.name, child.stop(), child) for child in children]
    for name, code, child in codes:
        # uvicorn ends a graceful shutdown by re-raising the signal it caught.
        output = child.output()
        assert code in (0, -signal.SIGTERM), f"{name} exited with {code}:\n{output[-3000:]}"
        assert "Application shutdown complete" in output, output[-3000:]


def _wait_output(child: Child, text: str, times: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while child.output().count(text) < times:
        assert time.monotonic() < deadline, child.output()[-3000:]
        time.sleep(0.05)


def usage_report(config: Path, by: str) -> dict[str | None, dict[str, Any]]:
    """``aifetch usage --by <by> --format json``, keyed by the group's name."""
    done = cli("usage", "--config", str(config), "--by", by, "--format", "json", "--since", "1h")
    assert done.returncode == 0, done.stderr
    return {line[by]: line for line in json.loads(done.stdout)}


def room_in_minute(seconds: float) -> None:
    """Return at once if the current UTC minute has ``seconds`` left, else just after the
    next one begins."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.2)
