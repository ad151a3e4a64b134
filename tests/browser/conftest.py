"""Fixtures for the browser half: a fake upstream scripted per model, a gateway in front of
it, two static servers (two origins) and headless Chromium, Debian's build.

The servers and the browser are started once for the package and stopped after it. The
browser is never downloaded: ``ensure_command`` installs Debian's ``chromium`` when it is
missing, and a browser that cannot be had fails the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.browser import scenarios
from tests.gateway.conftest import RunningGateway
from tests.support.fake_upstream import FakeUpstream
from tests.support.static_server import StaticServer
from tests.support.system import ensure_command

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
EXAMPLES = ROOT / "examples" / "browser"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="package")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="package")
def static() -> Iterator[StaticServer]:
    """Serves tests/ (the JS tests, page.html and the vectors): the test pages' origin."""
    with StaticServer(TESTS) as server:
        yield server


@pytest.fixture(scope="package")
def second_origin() -> Iterator[StaticServer]:
    """Serves examples/browser/ from another port: a web app's origin calling the gateway."""
    with StaticServer(EXAMPLES) as server:
        yield server


@pytest.fixture(scope="package")
def gateway(
    fake: FakeUpstream, static: StaticServer, second_origin: StaticServer
) -> Iterator[RunningGateway]:
    running = RunningGateway(scenarios.gateway_config(fake, [static.url, second_origin.url]))
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="package")
def js_env(gateway: RunningGateway) -> dict[str, str]:
    """What the JS tests read as ``env`` (tests/js/harness.mjs)."""
    return {
        "gateway": gateway.url,
        "key": scenarios.KEY,
        "narrowKey": scenarios.NARROW_KEY,
        "module": f"{gateway.url}/aifetch.js",
    }


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    path = ensure_command("chromium", "chromium")
    browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[Any] = []
    page.on("pageerror", lambda error: errors.append(error))
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
