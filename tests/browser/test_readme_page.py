"""The README's browser page, as printed there, served from its own origin and run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.gateway.conftest import RunningGateway, config_for
from tests.support.static_server import StaticServer

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_page() -> str:
    section = README.read_text().split("## In the browser", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```html\n(.*?)```", section, re.DOTALL)
    assert match, "the README's browser section has no html block"
    return match.group(1)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[StaticServer]:
    with StaticServer(tmp_path) as server:
        yield server


def test_the_readme_page_streams_a_chat(page: Page, site: StaticServer, tmp_path: Path) -> None:
    gateway = RunningGateway(config_for(cors={"allow_origins": [site.url]}))
    gateway.start()
    try:
        html = readme_page()
        assert html.count("http://127.0.0.1:8000") == 2
        (tmp_path / "chat.html").write_text(html.replace("http://127.0.0.1:8000", gateway.url))
        page.goto(f"{site.url}/chat.html")
        page.click("#send")
        expect(page.locator("#answer")).to_have_text(
            re.compile(r"^Hello from the aifetch mock provider\.")
        )
    finally:
        gateway.stop()
