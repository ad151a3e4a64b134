"""The shape of the code, kept by tests: the layers import only downwards, and the docs
list every error code the gateway answers with (docs/ARCHITECTURE.md, "Layers")."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aifetch.gateway._codes import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

# The sans-IO core: values in, values out. No sockets, no event loop, no threads, and
# nothing from the client or the gateway above it.
CORE = frozenset(
    {
        "aifetch._errors",
        "aifetch._headers",
        "aifetch._provider_error",
        "aifetch._redact",
        "aifetch._retry_timing",
        "aifetch._sse",
        "aifetch._status",
        "aifetch._timeouts",
        "aifetch._types",
        "aifetch._urls",
        "aifetch.openai._accumulator",
        "aifetch.openai._types",
        "aifetch.sse",
    }
)
# What the core may not import, directly or through another module.
IO_MODULES = frozenset(
    {"asyncio", "socket", "ssl", "selectors", "threading", "aiohttp", "urllib3", "uvicorn"}
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules ``path`` imports at run time (``if TYPE_CHECKING:`` blocks left out),
    relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(child) for child in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.add(module)
            # ``from . import _codes`` imports a module, not a name.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


MODULES = {_module_name(p): p for p in sorted((SRC / "aifetch").rglob("*.py"))}
GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _reach(start: str) -> set[str]:
    """Every module ``start`` imports, directly or through aifetch modules."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in GRAPH.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                if target in MODULES:
                    todo.append(target)
    return seen


def test_the_core_list_names_real_modules() -> None:
    assert set(MODULES) >= CORE, CORE - set(MODULES)


@pytest.mark.parametrize("module", sorted(CORE))
def test_the_core_does_no_io_and_knows_nothing_above_it(module: str) -> None:
    reached = _reach(module)
    io = {m for m in reached if m.split(".")[0] in IO_MODULES}
    assert not io, f"{module} reaches {sorted(io)}"
    above = {m for m in reached if m.startswith("aifetch") and m in MODULES and m not in CORE}
    assert not above, f"{module} imports {sorted(above)}, which are not core"


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if not m.startswith("aifetch.gateway"))
)
def test_the_client_never_imports_the_gateway(module: str) -> None:
    reached = {m for m in _reach(module) if m.startswith("aifetch.gateway")}
    assert not reached, f"{module} reaches {sorted(reached)}"


def test_the_gateway_docs_list_every_error_code() -> None:
    text = (ROOT / "docs" / "GATEWAY.md").read_text(encoding="utf-8")
    table = text[text.index("## Errors") :]
    row = r"^\| (?:\d{3}|upstream's) \| `([a-z_]+)` \|"
    listed = set(re.findall(row, table, flags=re.MULTILINE))
    codes = {spec.code for spec in REGISTRY if spec.code is not None}
    assert codes <= listed, f"not in docs/GATEWAY.md: {sorted(codes - listed)}"
    assert listed <= codes, f"listed but never raised: {sorted(listed - codes)}"


def test_every_registry_code_is_raised_somewhere() -> None:
    source = "\n".join(
        p.read_text(encoding="utf-8") for p in (SRC / "aifetch" / "gateway").rglob("*.py")
    )
    names = re.findall(
        r"^([A-Z_]+) = _spec\(", (SRC / "aifetch/gateway/_codes.py").read_text(), re.M
    )
    assert names
    unused = [name for name in names if not re.search(rf"codes\.{name}\b|\b{name}\(", source)]
    assert not unused, f"registry entries no code raises: {unused}"


def _loaded_after(code: str, modules: tuple[str, ...]) -> dict[str, bool]:
    """Which of ``modules`` a fresh interpreter has loaded after running ``code``."""
    probe = f"import sys\n{code}\nprint(' '.join(str(m in sys.modules) for m in {modules!r}))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    return {module: flag == "True" for module, flag in zip(modules, out, strict=True)}


def test_each_client_stack_loads_only_when_used() -> None:
    # The sync client, the SSE decoder and the OpenAI types need no aiohttp; the gateway
    # never needs urllib3 (a process holding 1,000 streams pays for every module it loads).
    stacks = ("aiohttp", "urllib3")
    assert _loaded_after("import aifetch, aifetch.sse, aifetch.openai", stacks) == {
        "aiohttp": False,
        "urllib3": False,
    }
    serve = "from aifetch.gateway import create_app, default_config\ncreate_app(default_config())"
    assert _loaded_after(serve, stacks) == {"aiohttp": True, "urllib3": False}
    assert _loaded_after("import aifetch; aifetch.Client", stacks) == {
        "aiohttp": False,
        "urllib3": True,
    }
