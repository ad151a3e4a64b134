"""aifetch.js's tests (tests/js/*.test.mjs) in headless Chromium.

The test page comes from one origin and imports the module from the gateway on another,
as a web app would, so every network test also crosses CORS. One pytest test per JS file;
a failure lists each failed JS test with its error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.support.static_server import StaticServer

JS_DIR = Path(__file__).resolve().parents[1] / "js"
JS_FILES = sorted(p.name for p in JS_DIR.glob("*.test.mjs"))

RUN = """async ({file, env}) => {
  globalThis.AIFETCH_TEST = env;
  const harness = await import("/js/harness.mjs");
  await import(`/js/${file}`);
  return harness.run();
}"""


@pytest.mark.parametrize("file", JS_FILES)
def test_module_in_chromium(
    file: str, page: Page, static: StaticServer, js_env: dict[str, str]
) -> None:
    page.goto(f"{static.url}/js/page.html")
    results = page.evaluate(RUN, {"file": file, "env": js_env})
    assert results, f"{file} registered no tests"
    failed = [r for r in results if not r["ok"]]
    assert not failed, "\n\n".join(f"{r['name']}:\n{r['error']}" for r in failed)
