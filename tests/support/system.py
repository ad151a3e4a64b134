"""What the test set-up may need from the machine: a command, installed from Debian's
packages when it is missing.

The README's test command must pass on a fresh Debian machine, so a test that needs a
browser or a service binary installs it here instead of skipping: a missing command that
cannot be installed fails the run with a message saying what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

__all__ = ["MissingCommandError", "ensure_command"]

# apt-get takes a lock of its own; this keeps two fixtures of one run from racing for it.
_APT_LOCK = threading.Lock()
_APT_TIMEOUT = 900.0


class MissingCommandError(RuntimeError):
    """A command the tests need is not installed and could not be installed."""


def ensure_command(command: str, package: str, *, paths: tuple[str, ...] = ()) -> str:
    """The path of ``command`` (searched on ``PATH``, then in ``paths``), installing
    Debian's ``package`` with ``apt-get`` when it is missing."""
    found = _find(command, paths)
    if found is not None:
        return found
    with _APT_LOCK:
        found = _find(command, paths)
        if found is None:
            _apt_install(package)
            found = _find(command, paths)
    if found is None:
        raise MissingCommandError(
            f"{command!r} is still missing after installing the Debian package {package!r}"
        )
    return found


def _find(command: str, paths: tuple[str, ...]) -> str | None:
    found = shutil.which(command)
    if found is not None:
        return found
    for folder in paths:
        candidate = os.path.join(folder, command)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _apt_install(package: str) -> None:
    if shutil.which("apt-get") is None:
        raise MissingCommandError(
            f"the tests need the Debian package {package!r}, and this machine has no apt-get: "
            "install it by hand"
        )
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", package])
    for step in steps:
        try:
            result = subprocess.run(
                [*sudo, *step],
                env=env,
                capture_output=True,
                text=True,
                timeout=_APT_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MissingCommandError(f"could not run {' '.join(step)}: {exc}") from None
        # A failed `update` (no network to a mirror) may still leave a usable cache.
        if result.returncode != 0 and step[1] == "install":
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise MissingCommandError(f"apt-get could not install {package!r}: " + " / ".join(tail))
