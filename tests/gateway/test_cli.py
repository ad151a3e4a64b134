"""``aifetch serve``: in-process argument handling, and the real command as printed in
the docs (a subprocess on a free port, stopped with SIGTERM)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
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
