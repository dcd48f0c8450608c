"""The API's /docs in headless Chromium with every request outside this machine refused, as on
a police network without internet: it renders from our own copy of Swagger UI."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import Pages, Stack, base, screenshot


async def test_the_api_docs_render_with_the_network_off(stack: Stack, pages: Pages) -> None:
    page = await pages.context.new_page()
    pages.pages.append(page)
    outside: list[str] = []

    async def only_this_machine(route: Any) -> None:
        if route.request.url.startswith(base()):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_this_machine)
    await page.goto(base() + "/docs")
    title = page.locator(".swagger-ui .info .title")
    await title.wait_for(timeout=10000)
    assert "Ansim" in await title.inner_text()
    # Every operation is listed, the SOS intake among them.
    await page.locator(
        "#operations-alerts-raise_sos_v1_alerts_post, [id^='operations-'][id*='v1_alerts_post']"
    ).first.wait_for(timeout=5000)
    assert outside == []
    await screenshot(page, "api-docs-offline")
