"""An installed (non-editable) aifetch carries the browser files the gateway serves.

setuptools' ``build_py`` step lays out exactly the files a wheel packs (the modules and the
package data), so it is run on a copy of the tree and its output checked.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JS_DIR = ROOT / "src" / "aifetch" / "js"
SERVED = {"aifetch.js", "aifetch.d.ts", "playground.html", "playground.js", "playground.css"}


def test_the_built_package_contains_the_browser_files(tmp_path: Path) -> None:
    # Built from a copy, so the build leaves nothing in the work tree.
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "lib"
    result = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "build_py", "-d", str(out)],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    built = {p.name for p in (out / "aifetch" / "js").iterdir()}
    on_disk = {p.name for p in JS_DIR.iterdir() if p.is_file()}
    assert on_disk >= SERVED
    assert built == on_disk
    assert (out / "aifetch" / "js" / "aifetch.js").read_bytes() == (
        JS_DIR / "aifetch.js"
    ).read_bytes()
