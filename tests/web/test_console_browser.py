"""The console and the phone simulator in headless Chromium against real processes."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from app.devices.signing import sign_request
from app.incidents.console_service import incident_summary
from app.incidents.store import NewIncident, insert_incident
from tests.web.conftest import (
    IN_A,
    IN_B,
    A,
    B,
    Pages,
    Stack,
    base,
    screenshot,
)


@pytest.fixture
async def world(make_district, make_staff, make_member, make_place) -> dict[str, Any]:
    a = await make_district("A", "District A", *A)
    b = await make_district("B", "District B", *B)
    await make_place("Night Owl Store #1", 37.521, 126.921)
    await make_place("Corner 24 #2", 37.518, 126.917, is_safety_house=False)
    await make_place("A Police Box", 37.525, 126.925, kind="police_box")
    await make_place("B Police Station", 37.52, 126.975, kind="police_station")
    disp_a = await make_staff("dispatcher", district_ids=(a,), name="Kim A")
    disp_a2 = await make_staff("dispatcher", district_ids=(a,), name="Choi A")
    disp_b = await make_staff("dispatcher", district_ids=(b,), name="Lee B")
    return {
        "a": a,
        "b": b,
        "disp_a": disp_a,
        "disp_a2": disp_a2,
        "disp_b": disp_b,
        "member": await make_member(),
        # A member's second SOS while her first is open joins it: other women raise the others.
        "others": [await make_member() for _ in range(2)],
    }


def username(staff: Any) -> str:
    return f"dispatcher-{staff.id.hex[:8]}"  # how tests/conftest.py's make_staff names them


async def sign_in(pages: Pages, staff: Any, **size: int) -> Any:
    page = await pages.new("/console", **size)
    await page.fill("#login-username", username(staff))
    await page.fill("#login-password", "pw")
    await page.click("#login-submit")
    await page.wait_for_function(
        "window.ansimConsole.connected && window.ansimConsole.snapshots > 0"
    )
    return page


async def post_sos(member: Any, at: tuple[float, float], **extra: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base(), timeout=5) as http:
        r = await http.post(
            "/v1/alerts",
            headers=member.headers,
            json={
                "client_alert_id": str(uuid.uuid4()),
                "trigger": "button",
                "location": {"lat": at[0], "lon": at[1], "accuracy_m": 12},
                **extra,
            },
        )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def row(page: Any, incident_id: str) -> Any:
    return page.locator(f"#incident-{incident_id}")


async def test_sos_posted_through_the_api_appears_on_the_console_within_two_seconds(
    stack: Stack, world: dict[str, Any], pages: Pages
) -> None:
    page = await sign_in(pages, world["disp_a"])
    started = time.monotonic()
    sos = await post_sos(world["member"], IN_A)
    await row(page, sos["incident_id"]).wait_for(timeout=2000)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0
    item = row(page, sos["incident_id"])
    text = await item.inner_text()
    assert "APP" in text and "NEW" in text and "District A" in text
    assert "ack in" in await item.locator(".deadline").inner_text()  # the countdown runs
    assert "flash" in (await item.get_attribute("class") or "")
    assert not await page.locator("#banner-new").is_hidden()
    assert await page.evaluate("window.ansimConsole.alarms") >= 1

    # Keyboard: j highlights, Enter opens the detail with the timeline and nearby places.
    await page.locator("body").press("j")
    await page.keyboard.press("Enter")
    await page.locator("#timeline li").first.wait_for()
    detail = await page.locator("#detail").inner_text()
    assert "reported" in detail
    assert "Night Owl Store #1" in detail and "A Police Box" in detail
    # Usable at 1366x768: nothing spills sideways; list, map and detail are all on screen.
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    for pane in (".list-pane", "#map", "#detail"):
        box = await page.locator(pane).bounding_box()
        assert box is not None and box["width"] > 250 and box["x"] + box["width"] <= 1366
    await screenshot(page, "console-1366x768")


async def test_acknowledge_click_changes_the_state_on_every_console_and_the_phone(
    stack: Stack, world: dict[str, Any], pages: Pages
) -> None:
    kim = await sign_in(pages, world["disp_a"])
    choi = await sign_in(pages, world["disp_a2"])
    sos = await post_sos(world["member"], IN_A)
    for page in (kim, choi):
        await row(page, sos["incident_id"]).wait_for(timeout=3000)

    await row(kim, sos["incident_id"]).click()
    await kim.locator("#act-ack:not([disabled])").click()
    await kim.locator("#detail-status", has_text="Acknowledged").wait_for(timeout=3000)
    await (
        row(choi, sos["incident_id"])
        .locator(".status", has_text="Acknowledged")
        .wait_for(timeout=3000)
    )
    assert await row(choi, sos["incident_id"]).locator(".deadline").inner_text() == ""
    async with httpx.AsyncClient(base_url=base()) as http:
        view = await http.get(f"/v1/alerts/{sos['incident_id']}", headers=world["member"].headers)
    assert view.json()["police_acknowledged"] is True

    # Assign a unit from the keyboard: u focuses the field.
    await kim.locator("body").press("u")
    await kim.keyboard.type("Patrol-12")
    await kim.keyboard.press("Enter")
    await kim.locator("#detail", has_text="Unit Patrol-12").wait_for(timeout=3000)


async def test_a_dispatcher_of_another_district_does_not_see_it(
    stack: Stack, world: dict[str, Any], pages: Pages
) -> None:
    lee = await sign_in(pages, world["disp_b"])
    kim = await sign_in(pages, world["disp_a"])
    in_a = await post_sos(world["member"], IN_A)
    in_b = await post_sos(world["others"][0], IN_B)
    await row(kim, in_a["incident_id"]).wait_for(timeout=3000)
    # B's own incident arrives after A's, so Lee's console was provably live when A's passed.
    await row(lee, in_b["incident_id"]).wait_for(timeout=3000)
    assert await row(lee, in_a["incident_id"]).count() == 0
    assert await row(kim, in_b["incident_id"]).count() == 0
    assert await lee.evaluate("window.ansimConsole.incidents.size") == 1


async def test_console_recovers_after_the_server_drops_its_socket_and_shows_what_it_missed(
    stack: Stack, world: dict[str, Any], pages: Pages, pool: Any
) -> None:
    # While the console process is down the browser logs the refused reconnects: expected.
    pages.allowed += ["ERR_CONNECTION_REFUSED", "WebSocket connection to"]
    page = await sign_in(pages, world["disp_a"])
    before = await post_sos(world["member"], IN_A)
    await row(page, before["incident_id"]).wait_for(timeout=3000)

    stack.consoles.kill()  # SIGKILL by PID: every socket on it drops without a goodbye
    await asyncio.to_thread(stack.consoles.popen.wait, 10)
    banner = page.locator("#banner-disconnected")
    await banner.wait_for(state="visible", timeout=3000)
    assert "DISCONNECTED" in await banner.inner_text()
    # Committed while this console had no socket (the intake's own insert, as POST commits it);
    # the dispatchers route it into the console log meanwhile.
    missed = await insert_incident(
        pool,
        NewIncident(
            source="app",
            trigger="sos",
            actor=f"member:{world['member'].id}",
            member_id=world["member"].id,
            lat=IN_A[0] + 0.001,
            lon=IN_A[1],
            accuracy_m=8,
        ),
    )
    assert missed is not None
    await screenshot(page, "console-disconnected")

    from tests.e2e.harness import start_consoles

    stack.consoles = await asyncio.to_thread(start_consoles, stack.consoles_port, stack.env)
    await row(page, str(missed.id)).wait_for(timeout=10000)
    await banner.wait_for(state="hidden", timeout=3000)
    state = await page.evaluate(
        "({connects: window.ansimConsole.connects, snapshots: window.ansimConsole.snapshots})"
    )
    # Reconnected with its cursor: the missed incident came from the replay, not a new snapshot.
    assert state == {"connects": 2, "snapshots": 1}
    assert await row(page, before["incident_id"]).count() == 1


async def test_incidents_arriving_together_come_in_one_frame_and_all_show(
    stack: Stack, world: dict[str, Any], pages: Pages, pool: Any, redis: Any, settings: Any
) -> None:
    """In a flood the console gets the messages that wait together as one batch frame: every
    incident in it is on the list."""
    page = await sign_in(pages, world["disp_a"])
    first = await post_sos(world["member"], IN_A)
    await row(page, first["incident_id"]).wait_for(timeout=3000)
    summary = await incident_summary(pool, uuid.UUID(first["incident_id"]))
    assert summary is not None
    frames = await page.evaluate("window.ansimConsole.frames")
    ids = [str(uuid.uuid4()) for _ in range(12)]
    pipe = redis.pipeline(transaction=True)  # on the console log at once
    for incident_id in ids:
        body = {"type": "incident", "event": "reported", "incident": {**summary, "id": incident_id}}
        pipe.xadd(
            settings.console_stream,
            {"district": str(world["a"]), "body": orjson.dumps({**body, "data": {}})},
        )
    await pipe.execute()
    for incident_id in ids:
        await row(page, incident_id).wait_for(timeout=3000)
    assert await page.evaluate("window.ansimConsole.frames") - frames < len(ids)


async def test_the_phone_page_sos_reaches_the_console_and_duress_stands_out(
    stack: Stack, world: dict[str, Any], pages: Pages
) -> None:
    console = await sign_in(pages, world["disp_a"])
    phone = await pages.new("/demo/phone", width=1280, height=800)
    await phone.fill("#token", world["member"].token)
    await phone.click("#use-token")
    await phone.locator("#sos:not([disabled])").wait_for()
    point = await phone.evaluate(
        "([lat, lon]) => { const m = document.querySelector('#map').getBoundingClientRect();"
        " const p = window.ansimPhoneMap.latLngToContainerPoint([lat, lon]);"
        " return {x: m.x + p.x, y: m.y + p.y}; }",
        list(IN_A),
    )
    await phone.mouse.click(point["x"], point["y"])
    await phone.click("#sos")
    await phone.locator("#alert:not([hidden])").wait_for(timeout=3000)
    incident_id = await phone.evaluate("window.ansimPhone.alert.id")
    assert "Night Owl Store #1" in await phone.locator("#places").inner_text()

    item = row(console, incident_id)
    await item.wait_for(timeout=3000)
    assert "District A" in await item.inner_text()
    await item.click()
    await console.locator("#act-ack:not([disabled])").click()
    await phone.locator("#alert-police", has_text="acknowledged").wait_for(timeout=5000)

    # She walks: a map click sends a trail point, the console draws it in the detail.
    await phone.mouse.click(point["x"] + 30, point["y"] - 20)
    await phone.locator("#message", has_text="Trail point sent").wait_for(timeout=3000)
    await console.locator("#detail", has_text="Trail (1 points)").wait_for(timeout=5000)

    # The duress PIN: her phone shows "cancelled", the console shows DURESS on top.
    await phone.fill("#pin", world["member"].duress_pin)
    await phone.click("#cancel")
    await phone.locator("#alert-status", has_text="cancelled").wait_for(timeout=3000)
    await item.locator(".badge.duress").wait_for(timeout=5000)
    assert "urgent" in (await item.get_attribute("class") or "")
    await screenshot(phone, "phone")
    await screenshot(console, "console-duress")


async def test_the_console_scales_to_a_large_control_room_screen(
    stack: Stack, world: dict[str, Any], pages: Pages
) -> None:
    page = await sign_in(pages, world["disp_a"], width=2560, height=1440)
    member = world["member"]
    first = await post_sos(world["others"][0], IN_A)
    second = await post_sos(world["others"][1], (IN_A[0] + 0.012, IN_A[1] + 0.01), silent=True)
    third = await post_sos(member, (IN_A[0] - 0.01, IN_A[1] - 0.012))
    async with httpx.AsyncClient(base_url=base()) as http:
        duress = await http.post(
            f"/v1/alerts/{third['incident_id']}/cancel",
            headers=member.headers,
            json={"pin": member.duress_pin},
        )
        assert duress.status_code == 200
        acked = await http.post(
            f"/v1/console/incidents/{first['incident_id']}/ack",
            headers=world["disp_a"].headers,
            json={},
        )
        assert acked.status_code == 200
    await row(page, third["incident_id"]).locator(".badge.duress").wait_for(timeout=5000)
    await row(page, second["incident_id"]).wait_for(timeout=3000)
    # Duress on top, then the unacknowledged one, then the acknowledged one.
    order = await page.eval_on_selector_all(
        "#incidents .incident", "els => els.map(e => e.dataset.id)"
    )
    assert order == [third["incident_id"], second["incident_id"], first["incident_id"]]
    await row(page, third["incident_id"]).click()
    await page.locator("#timeline li", has_text="duress").first.wait_for()
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    font = await page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    assert font >= 18  # readable from across a control room
    await screenshot(page, "console-2560x1440")
    await page.set_viewport_size({"width": 1366, "height": 768})
    await screenshot(page, "console-live")


async def test_a_silent_panic_button_shows_on_its_district_console(
    stack: Stack, world: dict[str, Any], pages: Pages, pool: Any, make_place: Any
) -> None:
    kim = await sign_in(pages, world["disp_a"])
    lee = await sign_in(pages, world["disp_b"])
    store = await make_place("GS25 Quiet Corner", IN_A[0], IN_A[1])
    device_id = uuid.uuid4()
    await pool.execute(  # a button heard from a minute ago: online, no device banner
        "INSERT INTO device (id, safe_place_id, label, secret, last_heartbeat_at)"
        " VALUES ($1, $2, 'counter', 'x', now() - interval '1 minute')",
        device_id,
        store,
    )
    press = await _signal("x", device_id, {"type": "silent_panic", "signal_id": str(uuid.uuid4())})
    item = row(kim, press["incident_id"])
    await item.wait_for(timeout=3000)
    text = await item.inner_text()
    assert "SILENT" in text and "Panic button" in text and "District A" in text
    assert await item.locator(".badge.silent").count() == 1
    await item.click()
    await kim.locator("#detail h2", has_text="panic button").wait_for(timeout=3000)
    assert await kim.locator(f"#device-{device_id}").count() == 0  # no offline banner for it
    # District B's console is not told about a store in A.
    assert await row(lee, press["incident_id"]).count() == 0
    await screenshot(kim, "console-silent-panic")


async def _signal(secret: str, device_id: uuid.UUID, body: dict[str, Any]) -> dict[str, Any]:
    raw = orjson.dumps(body)
    async with httpx.AsyncClient(base_url=base(), timeout=5) as http:
        r = await http.post(
            f"/v1/devices/{device_id}/signals", content=raw, headers=sign_request(secret, raw)
        )
    assert r.status_code in (200, 201), r.text
    answer: dict[str, Any] = r.json()
    return answer


async def test_the_devices_panel_survives_a_reload_and_shows_a_button_back_online(
    stack: Stack, world: dict[str, Any], pages: Pages, pool: Any, make_place: Any
) -> None:
    kim = await sign_in(pages, world["disp_a"])
    lee = await sign_in(pages, world["disp_b"])
    store = await make_place("GS25 Reload Corner", IN_A[0], IN_A[1], phone="02-777-8888")
    device_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO device (id, safe_place_id, label, secret, last_heartbeat_at)"
        " VALUES ($1, $2, 'counter', 'x', now() - interval '2 hours')",
        device_id,
        store,
    )
    item = kim.locator(f"#device-{device_id}")
    await item.wait_for(timeout=8000)
    assert "GS25 Reload Corner" in await item.inner_text()
    assert await kim.locator("#banner-devices").is_visible()
    await screenshot(kim, "console-device-offline")
    # A reload starts from a snapshot: the offline button is still there.
    await kim.reload()
    await kim.wait_for_function("window.ansimConsole.connected && window.ansimConsole.snapshots")
    await kim.locator(f"#device-{device_id}.device-offline").wait_for(timeout=3000)
    assert "OFFLINE" in await item.inner_text()
    await _signal("x", device_id, {"type": "low_battery", "battery_pct": 6})
    await _signal("x", device_id, {"type": "heartbeat", "battery_pct": 6})
    # Two messages (low_battery, then online), in that order but not necessarily one frame.
    await kim.locator(f"#device-{device_id}.device-low_battery:not(.device-offline)").wait_for(
        timeout=3000
    )
    text = await item.inner_text()
    assert "LOW BATTERY" in text and "OFFLINE" not in text and "6%" in text

    # A store's cancel is a request: the incident stays, the dispatcher is told to call.
    panic = await _signal("x", device_id, {"type": "panic", "signal_id": str(uuid.uuid4())})
    await row(kim, panic["incident_id"]).wait_for(timeout=3000)
    cancel = await _signal("x", device_id, {"type": "cancel"})
    assert (cancel["status"], cancel["cancelled"]) == ("cancelled", True)
    note = row(kim, panic["incident_id"]).locator(".store-note")
    await note.wait_for(timeout=3000)
    assert "call the store to verify" in await note.inner_text()
    assert "02-777-8888" in await note.inner_text()
    await screenshot(kim, "console-store-cancel-requested")
    # Then the clerk's duress: the note turns into the duress, nobody calls the store.
    await _signal("x", device_id, {"type": "duress"})
    await (
        row(kim, panic["incident_id"])
        .locator(".store-note[data-note=duress]")
        .wait_for(timeout=3000)
    )
    assert await lee.locator(f"#device-{device_id}").count() == 0
    assert await row(lee, panic["incident_id"]).count() == 0


async def test_a_district_nobody_watches_shows_on_the_neighbours_console_marked_covering(
    stack: Stack, world: dict[str, Any], pages: Pages
) -> None:
    lee = await sign_in(pages, world["disp_b"])  # nobody signed in for A
    in_a = await post_sos(world["member"], IN_A)
    covered = row(lee, in_a["incident_id"])
    await covered.wait_for(timeout=4000)
    badge = covered.locator(".badge.coverage")
    assert await badge.inner_text() == "COVERING FOR District A"
    await screenshot(lee, "console-covering")


async def test_a_dispatcher_with_a_second_factor_signs_in_with_the_current_code(
    stack: Stack, world: dict[str, Any], pages: Pages, sessionmaker: Any, settings: Any
) -> None:
    import pyotp

    from app.security.accounts import create_staff, enrol_totp

    async with sessionmaker() as session, session.begin():
        staff = await create_staff(
            session,
            role="dispatcher",
            username="park-totp",
            name="Park 2FA",
            password="pw-2fa",
            district_codes=["A"],
        )
        enrolment = await enrol_totp(session, staff=staff, secret_key=settings.secret_key)
    # The browser logs each 401 of the sign-in exchange as a failed resource load.
    pages.allowed.append("401")
    page = await pages.new("/console")
    assert await page.locator("#login-code-row").is_hidden()
    await page.fill("#login-username", "park-totp")
    await page.fill("#login-password", "pw-2fa")
    await page.click("#login-submit")
    await page.locator("#login-code-row").wait_for(state="visible")
    assert "authenticator" in await page.locator("#login-error").inner_text()
    assert await page.locator("#app").is_hidden()

    code = pyotp.TOTP(enrolment.secret).now()
    await page.fill("#login-code", f"{(int(code) + 500_000) % 1_000_000:06d}")
    await page.click("#login-submit")
    await page.wait_for_function(
        "document.getElementById('login-error').textContent.includes('Wrong or already used')"
    )
    assert await page.locator("#app").is_hidden()

    await page.fill("#login-code", pyotp.TOTP(enrolment.secret).now())
    await page.click("#login-submit")
    await page.wait_for_function(
        "window.ansimConsole.connected && window.ansimConsole.snapshots > 0"
    )
    assert await page.locator("#who").inner_text() == "Park 2FA"
    sos = await post_sos(world["member"], IN_A)
    await row(page, sos["incident_id"]).wait_for(timeout=3000)
