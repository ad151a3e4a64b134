"""``use: myapp.pipes:...`` loads from the config file's folder and from the working
directory, without ``PYTHONPATH``: in-process, and as the command a user runs."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import aifetch
from aifetch.gateway import ConfigError, GatewayConfig, create_app, load_config, parse_config
from tests.gateway.conftest import RunningGateway

PIPE = """
import importlib

from aifetch.gateway import Call, GatewayError, Next, Reply


async def team_rules(call: Call, next: Next) -> Reply:
    # A sibling module imported when the pipe runs, not when it loads.
    helpers = importlib.import_module(__package__ + ".helpers")
    raise GatewayError(418, helpers.MESSAGE, code="from_the_pipe")
"""


def _project(root: Path) -> str:
    """A package with a pipe under ``root``; its name is new to this process."""
    name = f"myapp_{uuid.uuid4().hex[:12]}"
    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "pipes.py").write_text(textwrap.dedent(PIPE))
    (package / "helpers.py").write_text(f"MESSAGE = 'team rules of {name}'\n")
    return name


def _config_text(name: str) -> str:
    return textwrap.dedent(
        f"""\
        upstreams: {{mock: {{kind: mock}}}}
        models: {{mock-gpt: {{targets: [{{upstream: mock}}]}}}}
        server: {{heartbeat: 0, shutdown_grace: 1}}
        pipes:
          - use: {name}.pipes:team_rules
        """
    )


@pytest.fixture
def clean_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo what loading a test's pipes does to the import path and the module table."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("myapp_"):
            del sys.modules[name]


def _called(gateway: RunningGateway, name: str) -> None:
    answer = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert answer.status_code == 418
    assert answer.json()["error"]["message"] == f"team rules of {name}"


@pytest.mark.usefixtures("clean_imports")
def test_a_pipe_next_to_the_config_file_loads(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    serve: Callable[[GatewayConfig], RunningGateway],
) -> None:
    name = _project(tmp_path / "project")
    config = tmp_path / "project" / "gateway.yaml"
    config.write_text(_config_text(name))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert str(tmp_path / "project") not in sys.path
    _called(serve(load_config(config)), name)


@pytest.mark.usefixtures("clean_imports")
def test_a_pipe_in_the_working_directory_loads(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    serve: Callable[[GatewayConfig], RunningGateway],
) -> None:
    name = _project(tmp_path / "project")
    monkeypatch.chdir(tmp_path / "project")
    # A config that is not a file at all: the working directory still counts.
    import yaml

    _called(serve(parse_config(yaml.safe_load(_config_text(name)))), name)


@pytest.mark.usefixtures("clean_imports")
def test_the_search_path_is_extended_once_and_never_shadows_an_installed_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _project(tmp_path / "project")
    # A module in the project folder named like one in the standard library.
    (tmp_path / "project" / "colorsys.py").write_text("raise RuntimeError('shadowed')\n")
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    config = tmp_path / "project" / "gateway.yaml"
    config.write_text(_config_text(name))
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    for _ in range(2):
        create_app(load_config(config))
    added = sys.path[len(before) :]
    assert sys.path[: len(before)] == before
    assert added == [str(tmp_path / "project"), str(tmp_path)]
    colorsys = importlib.import_module("colorsys")
    assert Path(colorsys.__file__ or "").parent != tmp_path / "project"


@pytest.mark.usefixtures("clean_imports")
def test_a_pipe_that_is_nowhere_names_the_folders_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "project" / "gateway.yaml"
    config.parent.mkdir()
    config.write_text(_config_text("myapp_missing"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        create_app(load_config(config))
    message = str(info.value)
    assert message.startswith("pipes[0].use: cannot load 'myapp_missing.pipes:team_rules'")
    assert f"{tmp_path / 'project'} and {tmp_path}" in message


def _source_root() -> str:
    """Where this aifetch is imported from, so the command runs the same code."""
    return str(Path(aifetch.__file__).resolve().parent.parent)


@pytest.mark.parametrize("run_from", ["project", "elsewhere"])
def test_the_command_loads_a_project_pipe_without_pythonpath(tmp_path: Path, run_from: str) -> None:
    name = _project(tmp_path / "project")
    (tmp_path / "project" / "gateway.yaml").write_text(_config_text(name))
    (tmp_path / "elsewhere").mkdir()
    cwd = tmp_path / run_from
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=_source_root())
    # -P: the working directory is not put on the path by Python itself (as with the
    # installed `aifetch` script, whose own folder is sys.path[0]).
    command = [sys.executable, "-P", "-m", "aifetch.gateway._cli", "serve", "--port", "0"]
    config = str(tmp_path / "project" / "gateway.yaml")
    proc = subprocess.Popen(
        [*command, "--config", config], cwd=cwd, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "aifetch gateway listening" in line or len(lines) > 50:
                break
        assert "aifetch gateway listening" in lines[-1], "".join(lines)
        port = int(lines[-1].split("http://127.0.0.1:")[1].split("/")[0])
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert answer.status_code == 418
        assert answer.json()["error"]["message"] == f"team rules of {name}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
