"""aifetch.js's tests (tests/js/*.test.mjs) under Node's built-in test runner, against the
same gateway as the Chromium run. Skipped, saying so, only where Node 20+ is not installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.browser.test_module_chromium import JS_DIR, JS_FILES

NODE_TIMEOUT = 120


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("Node is not installed: aifetch.js's tests ran in Chromium only")
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < 20:
        pytest.skip(
            f"Node {version.stdout.strip()} is older than 20: its fetch lacks what aifetch.js needs"
        )
    return path


@pytest.mark.parametrize("file", JS_FILES)
def test_module_in_node(file: str, node: str, js_env: dict[str, str]) -> None:
    env = {
        **os.environ,
        "AIFETCH_TEST_GATEWAY": js_env["gateway"],
        "AIFETCH_TEST_KEY": js_env["key"],
        "AIFETCH_TEST_NARROW_KEY": js_env["narrowKey"],
    }
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap", str(JS_DIR / file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    # Each failed test's TAP block first: the name, then its YAML diagnostics up to "...".
    failures = re.findall(r"^not ok .*?^\s*\.\.\.$", result.stdout, re.MULTILINE | re.DOTALL)
    report = "\n".join(failures)[-8000:] + result.stdout[-1500:] + result.stderr[-2000:]
    passed = re.search(r"^# pass (\d+)$", result.stdout, re.MULTILINE)
    assert result.returncode == 0, report
    assert re.search(r"^# fail 0$", result.stdout, re.MULTILINE), report
    assert passed is not None, report
    assert int(passed.group(1)) > 0, report
