"""The playground page in headless Chromium, as a person would use it.

Screenshots: set AIFETCH_SCREENSHOTS to a folder (``AIFETCH_SCREENSHOTS=docs``) and the
tests that show the page streaming, finished and failing save them there.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import scenarios
from tests.gateway.conftest import RunningGateway
from tests.support.fake_upstream import FakeUpstream

SHOTS = os.environ.get("AIFETCH_SCREENSHOTS")


def shot(page: Page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / f"playground-{name}.png"))


def open_playground(page: Page, gateway: RunningGateway, key: str = scenarios.KEY) -> None:
    page.goto(f"{gateway.url}/playground")
    page.fill("#key", key)
    page.locator("#key").blur()  # the key is taken (and the model list reloaded) on change
    # The list has loaded (or failed) before a test types a model.
    expect(page.locator("#model")).not_to_have_attribute("placeholder", "loading…")


def ask(page: Page, model: str, prompt: str = "How do streams reach a page?") -> None:
    page.fill("#model", model)
    page.fill("#prompt", prompt)
    page.click("#send")


def answer_length(page: Page) -> int:
    return len(page.locator("#turns li.assistant .text").last.inner_text())


def test_a_streamed_answer_grows_and_its_metrics_appear(
    page: Page, gateway: RunningGateway
) -> None:
    open_playground(page, gateway)
    expect(page.locator("#models option[value='words']")).to_have_count(1)
    page.fill("#system", "Answer briefly.")
    ask(page, "words")
    expect(page.locator("#status")).to_have_text("Streaming…")
    page.wait_for_function(
        "() => document.querySelector('#turns li.assistant .text').textContent.length > 20"
    )
    seen = answer_length(page)
    shot(page, "streaming")
    page.wait_for_function(
        f"() => document.querySelector('#turns li.assistant .text').textContent.length > {seen}"
    )
    expect(page.locator("#status")).to_have_text("Done (stop)", timeout=15_000)
    expect(page.locator("#turns li.assistant .text")).to_have_text(scenarios.WORDS)
    expect(page.locator("#m-ttft")).to_have_text(re.compile(r"^\d+ ms$"))
    expect(page.locator("#m-tps")).to_have_text(re.compile(r"^\d+(\.\d)?$"))
    expect(page.locator("#m-usage")).to_have_text(re.compile(r"^\d+ in · \d+ out · \d+ total$"))
    expect(page.locator("#m-timing")).to_have_text(re.compile(r"^gateway \d+\.\d ms · upstream"))
    expect(page.locator("#send")).to_be_enabled()
    shot(page, "finished")


def test_stop_closes_the_upstream_connection_within_a_second(
    page: Page, gateway: RunningGateway, fake: FakeUpstream
) -> None:
    open_playground(page, gateway)
    ask(page, "endless")
    page.wait_for_function(
        "() => document.querySelector('#turns li.assistant .text').textContent.includes('tok tok')"
    )
    calls = [r for r in fake.requests if r.path == "/endless/v1/chat/completions"]
    assert calls, "the gateway did not call the upstream"
    connection = calls[-1].connection_id
    pressed = time.monotonic()
    page.click("#stop")
    closed = fake.wait_for_close(connection, timeout=3.0)
    assert closed is not None, "the upstream connection was left open"
    assert closed - pressed < 1.0, f"closed {closed - pressed:.2f} s after Stop"
    expect(page.locator("#status")).to_have_text("Stopped")
    expect(page.locator("#send")).to_be_enabled()
    expect(page.locator("#turns li.assistant")).to_have_class(re.compile("stopped"))


def test_a_wrong_key_reads_plainly_and_stays_out_of_the_url(
    page: Page, gateway: RunningGateway
) -> None:
    open_playground(page, gateway, key="not-the-key-1234")
    error = page.locator("#error")
    expect(error).to_contain_text("401 Unauthorized")  # the model list was refused
    ask(page, "words")
    expect(page.locator("#status")).to_have_text("Failed")
    expect(error).to_contain_text("401 Unauthorized")
    expect(error).to_contain_text("Enter this gateway's key")
    assert "not-the-key" not in page.url
    assert "not-the-key" not in error.inner_text()
    stored = page.evaluate("() => sessionStorage.getItem('aifetch.playground.key')")
    assert stored == "not-the-key-1234"
    shot(page, "error")


def test_an_unknown_model_reads_plainly(page: Page, gateway: RunningGateway) -> None:
    open_playground(page, gateway)
    ask(page, "no-such-model")
    error = page.locator("#error")
    expect(error).to_contain_text("404 Not Found")
    expect(error).to_contain_text("The model 'no-such-model' does not exist")
    expect(error).to_contain_text("Pick a model from the list.")
    expect(page.locator("#send")).to_be_enabled()


def test_a_model_list_loaded_later_keeps_the_name_typed(
    page: Page, gateway: RunningGateway
) -> None:
    open_playground(page, gateway)
    expect(page.locator("#model")).to_have_value("cut")  # the page's own pick: the first
    page.fill("#model", "no-such-model")
    page.click("#reload")  # the list is loaded once more
    expect(page.locator("#model")).not_to_have_attribute("placeholder", "loading…")
    expect(page.locator("#model")).to_have_value("no-such-model")


@pytest.mark.parametrize(
    ("model", "texts"),
    [
        ("limited-long", ["429 Too Many Requests", "try again in 30 s"]),
        ("html-error", ["503 Service Unavailable", "trying again may work"]),
        ("midstream-error", ["The model failed mid-answer", "The answer above is incomplete."]),
        ("cut", ["The model failed mid-answer", "The answer above is incomplete."]),
    ],
)
def test_every_failure_reads_plainly(
    page: Page, gateway: RunningGateway, model: str, texts: list[str]
) -> None:
    open_playground(page, gateway)
    ask(page, model)
    expect(page.locator("#status")).to_have_text("Failed")
    for text in texts:
        expect(page.locator("#error")).to_contain_text(text)
    assert "<" not in page.locator("#error").inner_text()
    expect(page.locator("#send")).to_be_enabled()
    expect(page.locator("#stop")).to_be_disabled()
