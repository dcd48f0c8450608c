"""The console's walks home (issue 19) in headless Chromium against a real API and real
dispatchers: the district's running walks are counted, only a walk she shared with the control
centre is listed and on the map, a walk whose check went unanswered becomes an SOS (swept by
the dispatchers) that is highlighted and opens its incident, labelled WALK HOME; the evening's
scouts bookings are listed with a no-show marked."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from app.safe_return import scouts
from tests.web.conftest import IN_A, A, B, Pages, Stack, base, screenshot
from tests.web.test_console_browser import sign_in

HOME = (IN_A[0] + 0.004, IN_A[1] + 0.004)


@pytest.fixture
async def world(make_district, make_staff, make_member) -> dict[str, Any]:
    a = await make_district("A", "District A", *A)
    b = await make_district("B", "District B", *B)
    return {
        "a": a,
        "disp_a": await make_staff("dispatcher", district_ids=(a,), name="Kim A"),
        "disp_b": await make_staff("dispatcher", district_ids=(b,), name="Lee B"),
        "women": [await make_member(f"W{n}") for n in range(3)],
    }


async def _walk(member: Any, *, shared: bool, label: str) -> str:
    async with httpx.AsyncClient(base_url=base(), timeout=5) as http:
        r = await http.post(
            "/v1/safe-return",
            headers=member.headers,
            json={
                "destination": {"lat": HOME[0], "lon": HOME[1]},
                "destination_label": label,
                "origin": {"lat": IN_A[0], "lon": IN_A[1]},
                "share_with_control_centre": shared,
            },
        )
        assert r.status_code == 201, r.text
        sid = str(r.json()["session_id"])
        r = await http.post(
            f"/v1/safe-return/{sid}/locations",
            headers=member.headers,
            json={"points": [{"lat": IN_A[0] + 0.001, "lon": IN_A[1], "accuracy_m": 8}]},
        )
        assert r.status_code == 202
    return sid


async def test_the_console_counts_walks_shows_shared_ones_and_highlights_one_that_became_an_sos(
    stack: Stack, world: dict[str, Any], pages: Pages, pool: Any
) -> None:
    w = world["women"]
    shared = await _walk(w[0], shared=True, label="Shared home")
    await _walk(w[1], shared=False, label="Secret home")
    to_sos = await _walk(w[2], shared=True, label="Sos home")

    page = await sign_in(pages, world["disp_a"])
    panel = page.locator("#walks")
    await panel.wait_for(state="visible", timeout=5000)
    assert await page.locator("#walks-count").inner_text() == "3"
    assert "1 not shared" in await page.locator("#walks-hidden").inner_text()
    text = await panel.inner_text()
    assert "Shared home" in text and "Secret home" not in text
    await page.locator(f"#walk-{shared}").wait_for()
    assert await page.locator("path.walk-marker").count() == 2  # the two shared ones
    # The dispatcher of another district sees none of them.
    other = await sign_in(pages, world["disp_b"])
    assert await other.locator("#walks").is_hidden()

    # Her check went unanswered: the dispatchers' sweep turns it into an SOS.
    await pool.execute(
        "UPDATE safe_return_session SET status = 'asking', check_reason = 'no_arrival',"
        " asked_at = now() - interval '1 hour' WHERE id = $1",
        uuid.UUID(to_sos),
    )
    incident_id = None
    for _ in range(50):
        incident_id = await pool.fetchval(
            "SELECT incident_id FROM safe_return_session WHERE id = $1", uuid.UUID(to_sos)
        )
        if incident_id:
            break
        await page.wait_for_timeout(200)
    assert incident_id, "the dispatchers' sweep did not raise the SOS"
    item = page.locator(f"#incident-{incident_id}")
    await item.wait_for(timeout=5000)
    assert "WALK HOME" in await item.inner_text()
    await page.reload()  # (rather than wait for the panel's next poll)
    await page.wait_for_function(
        "window.ansimConsole.connected && window.ansimConsole.snapshots > 0"
    )
    sos = page.locator(f"#walk-{to_sos}")
    await sos.wait_for(timeout=5000)
    assert await sos.get_attribute("data-sos") == "true"
    assert "sos" in (await sos.get_attribute("class") or "").split()
    assert "SOS · not arrived" in await sos.inner_text()
    assert await page.locator("#walks-count").inner_text() == "2"
    assert await page.locator("path.walk-marker.sos").count() == 1
    await sos.click()
    await page.locator("#timeline li").first.wait_for()
    walk = await page.locator("#walk-reason").inner_text()
    assert "not arrived" in walk and "Sos home" in walk
    await screenshot(page, "console-walks-home")


async def test_the_console_lists_tonights_scouts_bookings_with_a_no_show(
    stack: Stack, world: dict[str, Any], pages: Pages, pool: Any, settings: Any, make_staff: Any
) -> None:
    await scouts.configure_district(
        pool,
        settings,
        district_code="A",
        min_lead_s=60,
        hours=[(wd, time(0), time(0)) for wd in range(7)],
        active=True,
    )
    pair = [await make_staff("volunteer", name=f"Scout {n}", badge_number=f"S-{n}") for n in (1, 2)]
    names = [await pool.fetchval("SELECT username FROM staff WHERE id = $1", s.id) for s in pair]
    await scouts.create_team(
        pool,
        district_code="A",
        name="A-1",
        scouts=(names[0], names[1]),
        base=scouts.Point(*IN_A),
        weekdays=list(range(7)),
    )
    meet_at = datetime.now(UTC) + timedelta(minutes=10)
    async with httpx.AsyncClient(base_url=base(), timeout=5) as http:
        r = await http.post(
            "/v1/scout-bookings",
            headers=world["women"][0].headers,
            json={
                "meeting_point": {"lat": IN_A[0], "lon": IN_A[1]},
                "meeting_label": "Exit 3",
                "meet_at": meet_at.isoformat(),
                "destination": {"lat": HOME[0], "lon": HOME[1]},
                "destination_label": "home",
            },
        )
    assert r.status_code == 201, r.text
    booking = r.json()["booking_id"]
    # Keep it in tonight's evening whatever the hour: it was due 11 minutes ago.
    tonight = scouts.evening_of(settings, datetime.now(UTC))
    due = max(
        datetime.now(UTC) - timedelta(minutes=11),
        datetime.combine(tonight, time(12, 1), ZoneInfo(settings.local_timezone)),
    )
    await pool.execute(
        "UPDATE scout_booking SET meet_at = $2 WHERE id = $1", uuid.UUID(booking), due
    )
    page = await sign_in(pages, world["disp_a"])
    item = page.locator(f"#booking-{booking}")
    await item.wait_for(timeout=5000)
    assert "Exit 3" in await item.inner_text() and "S-1, S-2" in await item.inner_text()
    if due <= datetime.now(UTC) - timedelta(seconds=settings.scout_no_show_s):
        # The dispatchers' sweep marks the no-show; the console shows it on its next poll.
        for _ in range(50):
            if (
                await pool.fetchval(
                    "SELECT status FROM scout_booking WHERE id = $1", uuid.UUID(booking)
                )
                == "no_show"
            ):
                break
            await page.wait_for_timeout(200)
        await page.reload()
        await page.wait_for_function(
            "window.ansimConsole.connected && window.ansimConsole.snapshots > 0"
        )
        item = page.locator(f"#booking-{booking}")
        await item.wait_for(timeout=5000)
        assert "NO-SHOW" in await item.inner_text()
