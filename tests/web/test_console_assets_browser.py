"""The console's incident detail lists the CCTV sites and emergency bells around her and draws
them on the map, and both follow her trail (headless Chromium on a real API and dispatchers)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from app.assets import importer
from tests.conftest import SEOUL, needs_seoul_data
from tests.web.conftest import Pages, Stack, base, screenshot
from tests.web.test_console_browser import post_sos, row, sign_in

pytestmark = needs_seoul_data

#: 장안근린공원 (동대문구), then 14 km away in 신림동 (관악구): real cameras and bells at both.
JANGAN = (37.5771, 127.0709)
SILLIM = (37.4759, 126.9407)


async def _import(pool: Any) -> None:
    async with pool.acquire() as conn:
        for name, kind in (
            ("seoul_public_cctv_district_standard_2019_2020.csv", "cctv"),
            ("seoul_safety_emergency_bells.csv", "bell"),
        ):
            data = (SEOUL / name).read_bytes()
            await importer.import_assets(conn, data=data, kind=kind, source=kind)


async def _listed(page: Any, kind: str) -> list[str]:
    ids: list[str] = await page.eval_on_selector_all(
        f"#assets li.asset-{kind}", "nodes => nodes.map(n => n.dataset.id)"
    )
    return ids


async def test_the_detail_lists_and_draws_cameras_and_bells_and_follows_her_trail(
    stack: Stack, pages: Pages, pool: Any, make_district: Any, make_staff: Any, make_member: Any
) -> None:
    await _import(pool)
    district = await make_district("11000", "Seoul (test)", 126.90, 37.45, 127.10, 37.60)
    dispatcher = await make_staff("dispatcher", district_ids=(district,), name="Park")
    member = await make_member()
    page = await sign_in(pages, dispatcher, width=1440, height=1000)
    sos = await post_sos(member, JANGAN)
    incident = sos["incident_id"]
    await row(page, incident).click()
    await page.locator("#assets li.asset-cctv").first.wait_for(timeout=5000)

    # The list is the API's answer, nearest first, with the office's phone for the bells.
    async with httpx.AsyncClient(base_url=base(), headers=dispatcher.headers) as http:
        api = (await http.get(f"/v1/console/incidents/{incident}/assets")).json()
    assert await _listed(page, "cctv") == [c["id"] for c in api["cameras"]]
    assert await _listed(page, "bell") == [b["id"] for b in api["bells"]] != []
    text = await page.locator("#assets").inner_text()
    assert f"CCTV ({api['cameras_within']})" in text
    assert api["bells"][0]["phone"] in text and api["bells"][0]["name"] in text
    # Drawn on the map: one marker per listed site, and the circle searched.
    markers = page.locator("#map path.asset-marker-cctv")
    assert await markers.count() == len(api["cameras"])
    assert await page.locator("#map path.asset-marker-bell").count() == len(api["bells"])
    await page.evaluate("document.getElementById('assets').scrollIntoView({block: 'start'})")
    await screenshot(page, "console-assets")  # docs/img/console-assets.png

    # Her trail moves to 신림동: the list and the markers follow her latest position.
    loads = await page.evaluate("window.ansimConsole.assetLoads")
    async with httpx.AsyncClient(base_url=base(), headers=member.headers) as http:
        r = await http.post(
            f"/v1/alerts/{incident}/locations",
            json={"points": [{"lat": SILLIM[0], "lon": SILLIM[1], "accuracy_m": 9}]},
        )
        assert r.status_code == 202, r.text
    await page.wait_for_function(f"window.ansimConsole.assetLoads > {loads}", timeout=5000)
    moved = await _listed(page, "cctv")
    assert moved and set(moved).isdisjoint(c["id"] for c in api["cameras"])
    assert "관악구청" in await page.locator("#assets").inner_text()
    assert await markers.count() == len(moved)

    # A wider radius lists more within it; a detail refresh without a move asks nothing again.
    loads = await page.evaluate("window.ansimConsole.assetLoads")
    await page.select_option("#assets-radius", "1000")
    await page.wait_for_function(f"window.ansimConsole.assetLoads > {loads}", timeout=5000)
    assert "within 1.0 km" in await page.locator("#assets").inner_text()
    loads = await page.evaluate("window.ansimConsole.assetLoads")
    await page.locator("body").press("a")  # acknowledge: the incident changes, she does not move
    await page.wait_for_function("document.querySelector('#detail-status').textContent !== 'NEW'")
    await page.wait_for_timeout(600)
    assert await page.evaluate("window.ansimConsole.assetLoads") == loads
    reads = await pool.fetch(
        "SELECT reason FROM location_access WHERE incident_id = $1 AND $2 = ANY(staff_ids)",
        uuid.UUID(incident),
        dispatcher.id,
    )
    # Every load the console made is a logged read, and so is the test's own request above.
    assert sum(r["reason"] == "console_assets" for r in reads) == loads + 1
