"""A child process for the tests that run aifetch as its users do (``aifetch serve``, the
fake upstream, the passthrough): in a session of its own, its output in a file, stopped
by its PID whatever happens."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# ``aifetch serve`` as the console script runs it, and the line it prints when it listens.
SERVE = (sys.executable, "-m", "aifetch.gateway._cli", "serve")
LISTENING = r"listening on http://127\.0\.0\.1:(\d+)/v1"


class Child:
    """``argv`` started at once; ``preexec`` runs in the child before it (a lower
    resource limit, say)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=_pythonpath())
        with log_path.open("wb") as out:
            self.popen = subprocess.Popen(
                list(argv),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The first match of ``pattern`` in the child's output, waiting for it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = regex.search(self.output())
            if match:
                return match
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not print {pattern!r}; output:\n{self.output()}")

    def port(self) -> int:
        """The port ``aifetch serve`` listens on, once it says so."""
        return int(self.wait_for(LISTENING).group(1))

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit; its exit status."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(STOP_TIMEOUT)
        return self.popen.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _pythonpath() -> str:
    # The children import ``tests.support`` (the upstream) and ``aifetch`` from the tree.
    parts = [str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)
