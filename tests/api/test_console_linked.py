"""A console's view of an incident's linked reports respects the dispatcher's scope.

A phone SOS and a button press 250 m apart (within ``link_radius_m``) on either side of a
district boundary are one emergency: each district's dispatcher sees the other's report only as
"another district's incident", with no position; every position shown is logged."""

from __future__ import annotations

import uuid

import httpx
import pytest

from app.dispatch import routing
from app.dispatch.gateways import build_gateways
from app.dispatch.relay import publish_pending
from app.incidents.console_service import OTHER_DISTRICT
from app.incidents.store import NewIncident, insert_incident

# Two districts side by side, the boundary at 126.95 E.
WEST = ("90001", "West-gu", 126.90, 37.50, 126.95, 37.55)
EAST = ("90002", "East-gu", 126.95, 37.50, 127.00, 37.55)
LAT = 37.52
PHONE_LON, PRESS_LON = 126.9486, 126.9514  # 247 m apart


@pytest.fixture
async def linked(pool, redis, settings, make_member, make_district):
    """The press (east) and then her SOS (west), linked by the dispatcher's routing."""
    assert settings.link_radius_m > 250
    west = await make_district(*WEST)
    east = await make_district(*EAST)
    press = await insert_incident(
        pool, NewIncident(source="button", trigger="button", actor="t", lat=LAT, lon=PRESS_LON)
    )
    member = await make_member()
    phone = await insert_incident(
        pool,
        NewIncident(
            source="app", trigger="button", actor="t", member_id=member.id, lat=LAT, lon=PHONE_LON
        ),
    )
    await publish_pending(pool, redis, settings)
    async with httpx.AsyncClient() as http:
        ctx = routing.Context(pool, redis, settings, build_gateways(settings, http))
        for _id, fields in await redis.xrange(settings.stream_incidents):
            entry = routing.parse_entry(fields)
            if entry.incident_id == phone.id:
                await routing.handle(ctx, entry)
    emergency = await pool.fetchval("SELECT emergency_id FROM incident WHERE id = $1", phone.id)
    assert emergency == press.id  # linked across the boundary
    return {"west": west, "east": east, "phone": phone.id, "press": press.id}


async def _reads(pool, staff_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await pool.fetch(
        "SELECT incident_id FROM location_access WHERE staff_ids @> ARRAY[$1]::uuid[]"
        " ORDER BY incident_id",
        staff_id,
    )
    return [r["incident_id"] for r in rows]


async def test_a_linked_incident_of_another_district_shows_without_position(
    client, pool, linked, make_staff
):
    west = await make_staff(district_ids=(linked["west"],))
    east = await make_staff(district_ids=(linked["east"],))

    r = await client.get(f"/v1/console/incidents/{linked['phone']}", headers=west.headers)
    assert r.status_code == 200 and r.json()["lat"] is not None
    assert r.json()["linked"] == [
        {
            "id": str(linked["press"]),
            "linked": OTHER_DISTRICT,
            "source": "button",
            "status": "new",
            "district_name": "East-gu",
        }
    ]
    r = await client.get(f"/v1/console/incidents/{linked['press']}", headers=east.headers)
    assert r.status_code == 200
    assert [(x["id"], x.get("lat"), x["linked"]) for x in r.json()["linked"]] == [
        (str(linked["phone"]), None, OTHER_DISTRICT)
    ]
    # Each read logs the one position it showed.
    assert await _reads(pool, west.id) == [linked["phone"]]
    assert await _reads(pool, east.id) == [linked["press"]]


async def test_a_linked_incident_in_scope_shows_whole_and_its_read_is_logged(
    client, pool, linked, make_staff
):
    city = await make_staff(city_wide=True)
    r = await client.get(f"/v1/console/incidents/{linked['phone']}", headers=city.headers)
    (press,) = r.json()["linked"]
    assert press["id"] == str(linked["press"]) and "linked" not in press
    assert press["lat"] is not None and press["lon"] is not None
    assert sorted(await _reads(pool, city.id)) == sorted([linked["phone"], linked["press"]])

    # Coverage is scope too: while the west covers for the east, a west dispatcher sees it.
    await pool.execute(
        "UPDATE incident SET covered_by = ARRAY[$2]::uuid[] WHERE id = $1",
        linked["press"],
        linked["west"],
    )
    west = await make_staff(district_ids=(linked["west"],))
    r = await client.get(f"/v1/console/incidents/{linked['phone']}", headers=west.headers)
    (press,) = r.json()["linked"]
    assert press["lat"] is not None and "linked" not in press
    assert sorted(await _reads(pool, west.id)) == sorted([linked["phone"], linked["press"]])
