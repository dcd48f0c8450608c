"""A commercial alarm panel in a woman's flat (an alarm account registered to her home), over
real sockets against real PostGIS and Redis: its burglary, panic and duress are incidents at
her home exactly as her own sensors raise them (her address, her district, her home's arming
history, a duress silent and escalated), its openings and closings are her home's arming
state, and a store's account does none of that."""

from __future__ import annotations

import uuid

import pytest

from app.receiver import accounts
from tests.homes.helpers import ADDRESS, DISTRICT, HOME_LAT, HOME_LON, make_home, signal
from tests.receiver.conftest import IN_A, panel
from tests.test_cli import ansim


@pytest.fixture
async def flat(pool, make_district, make_member):
    district_id = await make_district(*DISTRICT)
    her = await make_member()
    home = await make_home(pool, her.id)
    async with pool.acquire() as conn:
        account = await accounts.create_account(
            conn, home_id=home.id, account="4A11", supervision_s=600, label="ADT Caps, hall"
        )
    return {"district_id": district_id, "her": her, "home": home, "account": account}


async def _history(pool, home_id):
    rows = await pool.fetch(
        "SELECT kind, via, device_id, incident_id, duress FROM home_arming_event"
        " WHERE home_id = $1 ORDER BY id",
        home_id,
    )
    return [(r["kind"], r["via"]) for r in rows], rows


async def test_a_burglary_at_her_flat_is_an_incident_at_her_home_in_her_district(
    running, flat, pool, client, make_staff, make_district
):
    p = panel(running, "4A11")
    answer = await p.contact_id(1, 130, zone=3)
    await p.close()
    assert answer.kind == "ACK"
    (inc,) = await pool.fetch(
        "SELECT i.id, i.source, i.trigger, i.silent, i.duress, i.home_id, i.member_id,"
        " i.device_id, i.safe_place_id, d.code, ST_Y(i.location::geometry) AS lat,"
        " ST_X(i.location::geometry) AS lon"
        " FROM incident i LEFT JOIN district d ON d.id = i.district_id"
    )
    assert (inc["source"], inc["trigger"], inc["silent"]) == ("sensor", "alarm_burglary", False)
    assert inc["home_id"] == flat["home"].id and inc["safe_place_id"] is None
    # Linked to her through her home, not as her own alert (as her own sensors' incidents).
    assert inc["member_id"] is None
    assert str(inc["device_id"]) == flat["account"]["device_id"]
    assert inc["code"] == DISTRICT[0]
    assert (inc["lat"], inc["lon"]) == pytest.approx((HOME_LAT, HOME_LON))
    topics = await pool.fetch("SELECT topic FROM outbox WHERE incident_id = $1", inc["id"])
    assert [t["topic"] for t in topics] == ["incident.created"]
    kinds, rows = await _history(pool, flat["home"].id)
    assert kinds == [("alarm", "panel")] and rows[0]["incident_id"] == inc["id"]
    log = await pool.fetch("SELECT code, action, incident_id FROM alarm_event")
    assert [tuple(r) for r in log] == [("cid:130", "incident", inc["id"])]

    # The district's console: her address, the panel, the zone and the code it reported.
    dispatcher = await make_staff(district_ids=(flat["district_id"],))
    r = await client.get(f"/v1/console/incidents/{inc['id']}", headers=dispatcher.headers)
    assert r.status_code == 200, r.text
    home = r.json()["home"]
    assert home["address"] == ADDRESS
    assert home["sensor"] == {
        "id": flat["account"]["device_id"],
        "kind": "panel",
        "label": "ADT Caps, hall",
        "zone": "003",
        "alarm_code": "cid:130",
    }
    assert [(e["kind"], e["via"]) for e in home["arming_history"]] == [("alarm", "panel")]
    elsewhere = await make_district("90009", "Elsewhere-gu", 126.0, 37.0, 126.1, 37.1)
    other = await make_staff(district_ids=(elsewhere,))
    r = await client.get(f"/v1/console/incidents/{inc['id']}", headers=other.headers)
    assert r.status_code == 404


async def test_a_panic_then_the_panels_duress_is_one_silent_escalated_emergency_at_her_home(
    running, flat, pool
):
    p = panel(running, "4A11")
    assert (await p.contact_id(1, 120, zone=1)).kind == "ACK"
    assert (await p.contact_id(1, 121, zone=2)).kind == "ACK"  # duress: the user is 002
    await p.close()
    (inc,) = await pool.fetch("SELECT id, trigger, silent, duress, flags, home_id FROM incident")
    assert inc["trigger"] == "alarm_panic" and inc["home_id"] == flat["home"].id
    assert inc["duress"] and inc["silent"] and "repeated" in inc["flags"]
    # The duress goes through the outbox as her duress PIN's does: dispatch escalates it.
    duress = await pool.fetch(
        "SELECT payload FROM outbox WHERE incident_id = $1 AND payload->>'kind' = 'duress'",
        inc["id"],
    )
    assert [d["payload"]["via"] for d in duress] == ["alarm_panel"]
    _, rows = await _history(pool, flat["home"].id)
    assert [(r["kind"], r["duress"]) for r in rows] == [("alarm", False), ("alarm", True)]


async def test_a_duress_code_alone_raises_a_silent_duress_at_her_home(running, flat, pool):
    p = panel(running, "4A11")
    assert (await p.send("SIA-DCS", "Nri1/HA002")).kind == "ACK"
    await p.close()
    (inc,) = await pool.fetch("SELECT trigger, silent, duress, home_id FROM incident")
    assert tuple(inc) == ("alarm_duress", True, True, flat["home"].id)


async def test_a_retried_alarm_is_acted_on_once(running, flat, pool):
    p = panel(running, "4A11")
    answer = await p.contact_id(1, 130, zone=3)
    again = await p._exchange(p.sent[-1])  # the very same bytes: our ACK was lost
    await p.close()
    assert answer.kind == "ACK" and b'"ACK"' in again
    assert await pool.fetchval("SELECT count(*) FROM incident") == 1
    kinds, _ = await _history(pool, flat["home"].id)
    assert kinds == [("alarm", "panel")]


async def test_openings_and_closings_at_the_panel_are_her_homes_arming_state(
    running, flat, pool, client
):
    home = flat["home"]
    p = panel(running, "4A11")

    async def state():
        return await pool.fetchval("SELECT state FROM home WHERE id = $1", home.id)

    assert (await p.contact_id(3, 401, zone=3)).kind == "ACK"  # closing by user 3
    assert await state() == "away"
    assert (await p.contact_id(3, 441, zone=3)).kind == "ACK"  # armed stay
    assert await state() == "night"
    assert (await p.send("SIA-DCS", "Nri1/OP003")).kind == "ACK"  # opening
    assert await state() == "disarmed"
    assert (await p.contact_id(1, 401, zone=3)).kind == "ACK"  # disarmed already: no change
    # Armed at the panel, our own door contact starts the entry delay; her code at the
    # panel ends it.
    assert (await p.contact_id(3, 401, zone=3)).kind == "ACK"
    r = await signal(client, home.door, {"type": "open", "signal_id": str(uuid.uuid4())})
    assert r.status_code == 200
    assert await pool.fetchval("SELECT entry_due_at IS NOT NULL FROM home") is True
    assert (await p.contact_id(1, 401, zone=3)).kind == "ACK"
    await p.close()
    assert await pool.fetchval("SELECT entry_due_at FROM home") is None
    assert await state() == "disarmed"
    kinds, rows = await _history(pool, home.id)
    assert kinds == [
        ("arm_away", "panel"),
        ("arm_night", "panel"),
        ("disarm", "panel"),
        ("arm_away", "panel"),
        ("entry_started", "door"),
        ("disarm", "panel"),
    ]
    assert {str(r["device_id"]) for r in rows if r["via"] == "panel"} == {
        flat["account"]["device_id"]
    }
    assert await pool.fetchval("SELECT count(*) FROM incident") == 0
    actions = await pool.fetch("SELECT DISTINCT action FROM alarm_event")
    assert [a["action"] for a in actions] == ["arming"]


async def test_a_stores_closing_is_only_logged(running, pool, make_place, make_district, flat):
    place = await make_place("GS25 A", *IN_A)
    async with pool.acquire() as conn:
        await accounts.create_account(conn, place_id=place, account="5B22", supervision_s=600)
    p = panel(running, "5B22")
    assert (await p.contact_id(3, 401, zone=3)).kind == "ACK"
    await p.close()
    assert await pool.fetchval("SELECT state FROM home") == "disarmed"
    assert await pool.fetchval("SELECT count(*) FROM home_arming_event") == 0
    assert await pool.fetchval("SELECT action FROM alarm_event") == "arming"


async def test_an_erased_members_panel_is_answered_duh(running, flat, pool):
    await pool.execute("UPDATE home SET enabled = false")
    p = panel(running, "4A11")
    assert (await p.contact_id(1, 130)).kind == "DUH"
    await p.close()
    assert await pool.fetchval("SELECT count(*) FROM incident") == 0


async def test_the_panels_device_is_no_http_device(client, flat, pool):
    device_id = flat["account"]["device_id"]
    secret = await pool.fetchval("SELECT secret FROM device WHERE id = $1::uuid", device_id)
    # Even with its secret (never shown), neither device endpoint knows a panel.
    for url in (f"/v1/homes/devices/{device_id}/signals", f"/v1/devices/{device_id}/signals"):
        from tests.homes.helpers import Sensor

        r = await signal(client, Sensor(uuid.UUID(device_id), secret, "panel"), {"type": "test"},
                         url=url)  # fmt: skip
        assert r.status_code == 401 and r.json()["error"] == "DeviceUnauthorized"


async def test_an_account_belongs_to_a_store_or_a_home_exactly_one(
    client, pool, make_place, make_staff, flat
):
    operator = await make_staff("operator")
    place = await make_place("GS25 A", *IN_A)
    home_id = str(flat["home"].id)
    r = await client.post(
        "/v1/admin/alarm-accounts",
        json={"home_id": home_id, "account": "4A12", "supervision_s": 300},
        headers=operator.headers,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["home_id"] == home_id and created["safe_place_id"] is None
    kind, device_home = await pool.fetchrow(
        "SELECT kind, home_id FROM device WHERE id = $1::uuid", created["device_id"]
    )
    assert (kind, str(device_home)) == ("panel", home_id)
    for payload, status in [
        ({"home_id": home_id, "place_id": str(place)}, 400),
        ({}, 400),
        ({"home_id": str(uuid.uuid4())}, 404),
    ]:
        r = await client.post(
            "/v1/admin/alarm-accounts",
            json={"account": "4A13", "supervision_s": 300, **payload},
            headers=operator.headers,
        )
        assert r.status_code == status, (payload, r.text)
        assert {"error", "detail"} <= set(r.json())
    assert await pool.fetchval("SELECT count(*) FROM alarm_account") == 2

    # The CLI too (a real process).
    out = ansim("alarm-accounts", "create", "--home-id", home_id, "--account", "4a14", "--json")
    import json

    assert json.loads(out.stdout)["home_id"] == home_id
    both = ansim(
        "alarm-accounts", "create", "--home-id", home_id, "--place-id", str(place),
        "--account", "4A15", check=False,
    )  # fmt: skip
    assert both.returncode == 2 and "exactly one" in both.stderr


async def test_a_silent_panel_in_her_flat_is_offline_on_her_districts_consoles(
    running, flat, pool, settings
):
    from app.devices import health

    await pool.execute(
        "UPDATE device SET offline_after_s = 0.5, created_at = now() - interval '1 minute'"
        " WHERE kind = 'panel'"
    )
    assert await health.report_offline(pool, settings) == 1
    assert await health.report_offline(pool, settings) == 0  # once per outage
    (payload,) = await pool.fetch(
        "SELECT payload FROM outbox WHERE topic = $1", health.TOPIC_DEVICE_OFFLINE
    )
    p = payload["payload"]
    assert p["district_code"] == DISTRICT[0]
    assert p["device"]["kind"] == "panel" and p["device"]["store"] is None
    assert p["device"]["home"] == {
        "id": str(flat["home"].id),
        "label": "flat 302",
        "address": ADDRESS,
    }
    # Its next message (a link test) brings it back online.
    q = panel(running, "4A11")
    assert (await q.link_test()).kind == "ACK"
    await q.close()
    assert (
        await pool.fetchval("SELECT offline_reported_at FROM device WHERE kind = 'panel'") is None
    )
