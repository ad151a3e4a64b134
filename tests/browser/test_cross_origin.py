"""A page on another origin uses the gateway through its CORS config (docs/BROWSER.md):
the example in examples/browser/, served by a second static server on another port."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser import scenarios
from tests.gateway.conftest import RunningGateway
from tests.support.static_server import StaticServer


def test_the_example_page_streams_a_chat_from_another_origin(
    page: Page, gateway: RunningGateway, second_origin: StaticServer
) -> None:
    preflights: list[str] = []
    page.on("request", lambda r: preflights.append(r.url) if r.method == "OPTIONS" else None)
    page.goto(f"{second_origin.url}/chat.html")
    page.fill("#gateway", gateway.url)
    page.fill("#key", scenarios.KEY)
    page.fill("#model", "gpt")
    page.click("text=Send")
    expect(page.locator("#answer")).to_have_text("Hello from fake-model")
    expect(page.locator("#error")).to_have_text("")


def test_an_origin_not_listed_is_refused(page: Page, gateway: RunningGateway) -> None:
    # about:blank has an opaque origin, which the gateway does not list.
    page.goto("about:blank")
    outcome = page.evaluate(
        """async (url) => {
            try { await fetch(url); return "allowed"; } catch (err) { return err.name; }
        }""",
        f"{gateway.url}/v1/models",
    )
    assert outcome == "TypeError"


def test_a_page_on_another_origin_reads_retry_after_ms(
    page: Page, gateway: RunningGateway, second_origin: StaticServer
) -> None:
    page.goto(f"{second_origin.url}/chat.html")
    seen = page.evaluate(
        """async ({url, key}) => {
            const response = await fetch(url, {
                method: "POST",
                headers: {authorization: `Bearer ${key}`, "content-type": "application/json"},
                body: JSON.stringify({model: "limited-ms", user: crypto.randomUUID()}),
            });
            return [response.status, response.headers.get("retry-after-ms")];
        }""",
        {"url": f"{gateway.url}/v1/chat/completions", "key": scenarios.KEY},
    )
    assert seen == [429, "1200"]
