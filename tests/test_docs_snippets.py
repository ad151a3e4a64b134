"""The README's and docs/GATEWAY.md's snippets, run as printed, so a document that drifts
from the code fails CI. Each block carries a marker saying what to do with it (see
``tests/support/snippets.py``): ``run`` against a real ``aifetch serve`` on a free port,
``check`` a config, or ``skip`` for a reason given."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import aifetch
from aifetch.gateway import parse_config
from tests.support.child import SERVE, Child
from tests.support.snippets import Snippet, snippets
from tests.support.system import ensure_command

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "docs" / "GATEWAY.md"]
ALL = [snippet for document in DOCUMENTS for snippet in snippets(document)]
HANG = 60.0


def _where(snippet: Snippet) -> str:
    return snippet.where


def _chosen(action: str, language: str) -> list[Snippet]:
    return [s for s in ALL if s.action == action and s.language == language]


def test_every_snippet_says_what_to_do_with_it() -> None:
    assert len(ALL) >= 20  # the documents were found and read
    unmarked = [s.where for s in ALL if s.action not in ("run", "check", "skip")]
    assert unmarked == [], "add <!-- snippet: run|check|skip: why --> above these blocks"
    unexplained = [s.where for s in ALL if s.action == "skip" and not s.options.get("why")]
    assert unexplained == []
    # The gateway's own examples are run, not skipped: both documents run some of each.
    for document in DOCUMENTS:
        ran = {s.language for s in ALL if s.path == document and s.action == "run"}
        assert ran == {"sh", "python"}, document.name


# --- what the examples may import --------------------------------------------------------


def _requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match, requirement
        names.add(re.sub(r"[-_.]+", "-", match.group()).lower())
    return names


def _project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        project: dict[str, Any] = tomllib.load(file)["project"]
        return project


def _imports(code: str) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("snippet", _chosen("run", "python"), ids=_where)
def test_a_python_snippet_imports_only_what_its_install_line_brings(snippet: Snippet) -> None:
    project = _project()
    allowed = _requirement_names(project["dependencies"])
    extra = snippet.options.get("needs")
    if extra is not None:
        extras = project["optional-dependencies"]
        assert extra in extras, f"{snippet.where}: no extra {extra!r} in pyproject.toml"
        allowed |= _requirement_names(extras[extra])
        # The install line is shown beside the snippet, in its section.
        assert f"[{extra}]" in snippet.section, f"{snippet.where}: show the install of [{extra}]"
    providers = importlib.metadata.packages_distributions()
    for module in sorted(_imports(snippet.code)):
        if module in sys.stdlib_module_names or module == "aifetch":
            continue
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(module, [])}
        assert dists & allowed, (
            f"{snippet.where}: imports {module!r}, which neither aifetch's dependencies nor "
            f"the extra it names ({extra}) install"
        )


# --- run against a real gateway -------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``aifetch serve`` with no config, as the documents start it, on a free port."""
    log = tmp_path_factory.mktemp("served") / "gateway.log"
    with Child("aifetch serve", [*SERVE, "--port", "0"], log) as gateway:
        yield gateway.port()


def _source_root() -> str:
    return str(Path(aifetch.__file__).resolve().parent.parent)


def _on(port: int, code: str) -> str:
    return code.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace(
        "localhost:8000", f"localhost:{port}"
    )


@pytest.mark.parametrize("snippet", _chosen("run", "sh"), ids=_where)
def test_a_shell_snippet_runs_as_printed(snippet: Snippet, served: int, tmp_path: Path) -> None:
    ensure_command("curl", "curl")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _on(served, snippet.code)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=HANG,
    )
    assert done.returncode == 0, f"{snippet.where}: {done.stderr}"
    assert done.stdout.strip(), snippet.where
    # An error answer (a model renamed, a route moved) is a drift, even with exit status 0.
    assert '"error"' not in done.stdout, f"{snippet.where}: {done.stdout[:500]}"


@pytest.mark.parametrize("snippet", _chosen("run", "python"), ids=_where)
def test_a_python_snippet_runs_as_printed(snippet: Snippet, served: int, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=_source_root())
    done = subprocess.run(
        [sys.executable, "-c", _on(served, snippet.code)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=HANG,
    )
    assert done.returncode == 0, f"{snippet.where}: {done.stderr}"
    assert "Traceback" not in done.stderr, f"{snippet.where}: {done.stderr}"
    if "127.0.0.1:8000" in snippet.code:  # a call to the gateway: its answer is printed
        assert "Hello from the aifetch mock provider" in done.stdout, snippet.where


# --- configs -------------------------------------------------------------------------------

_MINIMAL = {
    "upstreams": {"mock": {"kind": "mock"}},
    "models": {"mock-gpt": {"targets": [{"upstream": "mock"}]}},
}


@pytest.mark.parametrize("snippet", _chosen("check", "yaml"), ids=_where)
def test_a_config_snippet_is_a_valid_config(snippet: Snippet) -> None:
    raw = yaml.safe_load(snippet.code)
    assert isinstance(raw, dict), snippet.where
    names = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", snippet.code)
    env = {name: f"placeholder-secret-{i:04d}-value" for i, name in enumerate(names)}
    config = parse_config({**_MINIMAL, **raw}, env)
    for key in raw:
        assert getattr(config, key), f"{snippet.where}: {key} was not read"
