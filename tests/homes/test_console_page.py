"""The console page (a real browser on a real API and dispatcher, on free ports): a home's
alarm shows her address, the sensor that fired and the arming history, a duress PIN marked."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from typing import Any

import pytest

from tests.e2e.harness import free_port, stack_env, start_api, start_dispatcher
from tests.homes.helpers import ADDRESS, DISTRICT, make_home
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM

pytestmark = pytest.mark.skipif(not HAVE_CHROMIUM, reason="needs Debian's chromium")


@pytest.fixture(scope="module")
async def site(migrated, settings):
    port = free_port()
    env = stack_env(
        redis_url=settings.redis_url,
        gateway_port=None,
        ANSIM_ACK_DEADLINE_S="120",
        ANSIM_HOME_ENTRY_CHECK_S="0.2",
        ANSIM_DB_POOL_SIZE="4",
    )
    api = await asyncio.to_thread(start_api, port, env)
    dispatcher = start_dispatcher("homes-page", env)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        dispatcher.stop()
        api.stop(timeout=3)


@pytest.fixture
async def page(site):
    from playwright.async_api import async_playwright

    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ansim-chromium-") as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1366, "height": 768},
                env={**os.environ, "TZ": "Asia/Seoul"},
            )
            try:
                p = await context.new_page()
                p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                p.on("pageerror", lambda e: errors.append(f"uncaught {e}"))
                yield p
            finally:
                await context.close()
    assert errors == [], "browser console errors"


async def _sign_in(page: Any, site: str, staff: Any) -> None:
    await page.goto(site + "/console")
    await page.fill("#login-username", f"dispatcher-{staff.id.hex[:8]}")
    await page.fill("#login-password", "pw")
    await page.click("#login-submit")
    await page.wait_for_function(
        "window.ansimConsole.connected && window.ansimConsole.snapshots > 0"
    )


async def test_a_home_alarm_shows_her_address_the_sensor_and_the_arming_history(
    site, page, pool, make_district, make_member, make_staff
):
    district = await make_district(*DISTRICT)
    her = await make_member()
    home = await make_home(pool, her.id)
    dispatcher = await make_staff(district_ids=(district,))
    await _sign_in(page, site, dispatcher)
    import httpx
    import orjson

    from app.devices.signing import sign_request

    async with httpx.AsyncClient(base_url=site) as http:
        await http.post(f"/v1/me/homes/{home.id}/arm", json={"mode": "away"}, headers=her.headers)
        raw = orjson.dumps({"type": "open", "signal_id": str(uuid.uuid4())})
        r = await http.post(home.door.url, content=raw, headers=sign_request(home.door.secret, raw))
        assert r.status_code == 200
        # Her duress PIN at the door: the home disarms as usual, the console goes red.
        r = await http.post(
            f"/v1/me/homes/{home.id}/disarm", json={"pin": her.duress_pin}, headers=her.headers
        )
        assert r.status_code == 200
    incident_id = None
    for _ in range(100):
        incident_id = await pool.fetchval("SELECT id FROM incident")
        if incident_id:
            break
        await asyncio.sleep(0.1)
    assert incident_id is not None
    row = page.locator(f'[data-id="{incident_id}"]').first
    await row.wait_for(timeout=10000)
    await row.click()
    await page.locator("#home-address").wait_for(timeout=10000)
    assert ADDRESS in await page.locator("#home-address").inner_text()
    assert "door" in await page.locator("#home-sensor").inner_text()
    history = await page.locator("#home-history li").all_inner_texts()
    assert len(history) == 3
    assert "arm away" in history[0] and "entry started" in history[1]
    assert "disarm" in history[2] and "DURESS PIN" in history[2]
