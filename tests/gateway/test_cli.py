"""``aifetch serve``: in-process argument handling, and the real command as printed in
the docs (a subprocess on a free port, stopped with SIGTERM)."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from aifetch.gateway._cli import main


def test_config_error_exits_2_and_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("upstreams: {}\nmodels:\n  m:\n    targets: [{upstream: ghost}]\n")
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "models.m.targets[0].upstream: unknown upstream 'ghost'" in err


def test_refuses_public_address_without_callers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "refusing to listen on 0.0.0.0: no callers are configured" in capsys.readouterr().err


def test_serve_without_config_works_as_documented() -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aifetch.gateway._cli", "serve", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        line = ""
        for line in proc.stderr:
            if "aifetch gateway listening" in line:
                break
        match = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        assert match, line
        assert "no callers configured: loopback only" in line
        base = f"http://127.0.0.1:{match.group(1)}"
        # The curl call from docs/GATEWAY.md, made with httpx.
        answer = httpx.post(
            base + "/v1/chat/completions",
            json={"model": "mock-gpt", "messages": [{"role": "user", "content": "Hello"}]},
        )
        assert answer.status_code == 200
        # The openai SDK call from docs/GATEWAY.md.
        with openai.OpenAI(base_url=base + "/v1", api_key="unused") as client:
            stream = client.chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": "Hello"}], stream=True
            )
            text = "".join(
                chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices
            )
        assert text.startswith("Hello from the aifetch mock provider")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
            rest = proc.stderr.read() if proc.stderr is not None else ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
    # uvicorn shuts down cleanly, then re-raises the signal it caught (so the exit status
    # still says SIGTERM).
    assert "Finished server process" in rest
    assert proc.returncode in (0, -signal.SIGTERM)


BAD_PORTS = ["99999", "65536", "-1", "abc", "1.5", ""]


@pytest.mark.parametrize("port", BAD_PORTS)
def test_a_port_outside_0_to_65535_is_a_usage_error(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", f"--port={port}"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --port/-p: {port!r}" in err or f"argument --port/-p: {port} " in err
    assert "is not a port number" in err
    assert "Try 'aifetch serve --help' for help." in err


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_port_in_use_is_one_error_before_anything_starts(
    busy_port: int, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    for workers in ("1", "2"):
        assert main(["serve", "--port", str(busy_port), "--workers", workers]) == 1
        err = capsys.readouterr().err
        assert err.splitlines() == [
            f"aifetch: cannot listen on 127.0.0.1:{busy_port}: address already in use; "
            "is another server running there? Choose another --port"
        ]
        # Nothing was started or announced.
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "aifetch.gateway._cli", "serve", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_command_with_a_port_in_use_prints_one_line_and_exits_1(
    busy_port: int, workers: str
) -> None:
    done = _serve("--port", str(busy_port), "--workers", workers)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"aifetch: cannot listen on 127.0.0.1:{busy_port}: address already in use; "
        "is another server running there? Choose another --port"
    ]
    assert "Application startup complete" not in done.stderr + done.stdout


def test_the_command_refuses_a_bad_port_with_a_hint() -> None:
    done = _serve("--port", "99999")
    assert done.returncode == 2
    assert "argument --port/-p: 99999 is not a port number: use 0-65535" in done.stderr
    assert done.stderr.rstrip().endswith("Try 'aifetch serve --help' for help.")
    assert "listening" not in done.stderr
