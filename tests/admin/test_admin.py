"""Operator endpoints: the location access log (append-only in the database too), security
events, panic-button health and life cycle, revoking credentials."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from app.incidents.console_service import log_location_access, log_location_reads
from app.incidents.store import NewIncident, insert_incident
from tests.devices.helpers import make_device, send_signal

IN_A = (37.52, 126.92)


@pytest.fixture
async def world(make_district, make_staff, make_member, make_place, pool):
    a = await make_district("11110", "District A", 126.90, 37.50, 126.95, 37.55)
    member = await make_member()
    stored = await insert_incident(
        pool,
        NewIncident(
            source="app",
            trigger="button",
            actor="t",
            member_id=member.id,
            lat=IN_A[0],
            lon=IN_A[1],
        ),
    )
    assert stored is not None and not hasattr(stored, "into")
    place = await make_place("GS25 A", IN_A[0] + 0.001, IN_A[1])
    return {
        "district": a,
        "member": member,
        "incident": stored.id,
        "place": place,
        "device": await make_device(pool, place),
        "operator": await make_staff("operator", name="Op"),
        "dispatcher": await make_staff("dispatcher", district_ids=(a,), name="Kim A"),
    }


async def test_operators_see_who_read_which_location_when_and_why(client, world):
    disp, op = world["dispatcher"], world["operator"]
    incident = world["incident"]
    r = await client.get(f"/v1/console/incidents/{incident}", headers=disp.headers)
    assert r.status_code == 200
    r = await client.get("/v1/console/incidents", headers=disp.headers)
    assert r.status_code == 200

    r = await client.get(
        "/v1/admin/location-access", params={"incident_id": str(incident)}, headers=op.headers
    )
    assert r.status_code == 200, r.text
    entries = r.json()["entries"]
    assert [e["reason"] for e in entries] == ["console_list", "console_detail"]  # newest first
    kim = {"id": str(disp.id), "username": f"dispatcher-{disp.id.hex[:8]}", "name": "Kim A"}
    assert all(e["staff"] == [{**kim, "role": "dispatcher"}] for e in entries)
    assert all(e["incident_id"] == str(incident) for e in entries)

    by_reason = await client.get(
        "/v1/admin/location-access", params={"reason": "console_detail"}, headers=op.headers
    )
    assert len(by_reason.json()["entries"]) == 1
    other_staff = await client.get(
        "/v1/admin/location-access", params={"staff_id": str(op.id)}, headers=op.headers
    )
    assert other_staff.json()["entries"] == []
    future = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    later = await client.get(
        "/v1/admin/location-access", params={"since": future}, headers=op.headers
    )
    assert later.json()["entries"] == []
    page = await client.get(
        "/v1/admin/location-access",
        params={"limit": 1, "before_id": entries[0]["id"]},
        headers=op.headers,
    )
    assert [e["id"] for e in page.json()["entries"]] == [entries[1]["id"]]


async def test_one_entry_names_every_reader_and_the_staff_filter_finds_each_of_them(
    client, world, pool, make_staff
):
    """Reads of one incident written together are one entry; filtering by a staff member finds
    it wherever she stands in it, and a reader whose staff row is gone is still listed."""
    op, incident = world["operator"], world["incident"]
    others = [await make_staff(district_ids=(world["district"],)) for _ in range(2)]
    gone = uuid.uuid4()  # a reader whose staff row no longer exists
    readers = sorted([world["dispatcher"].id, *(o.id for o in others), gone])
    await log_location_reads(
        pool,
        staff_ids=[*readers, readers[1], *readers],  # as several consoles' batches repeat them
        incident_ids=[incident] * (2 * len(readers) + 1),
        reason="console_stream",
    )
    await log_location_access(
        pool, staff_id=readers[0], incident_ids=[incident], reason="console_detail"
    )

    r = await client.get(
        "/v1/admin/location-access", params={"staff_id": str(readers[1])}, headers=op.headers
    )
    assert r.status_code == 200, r.text
    (entry,) = r.json()["entries"]
    assert entry["reason"] == "console_stream" and entry["incident_id"] == str(incident)
    assert [s["id"] for s in entry["staff"]] == [str(i) for i in readers]
    listed = {uuid.UUID(s["id"]): s for s in entry["staff"]}
    assert listed[gone] == {"id": str(gone), "username": None, "name": None, "role": None}
    assert listed[world["dispatcher"].id]["name"] == "Kim A"
    for i in readers:
        r = await client.get(
            "/v1/admin/location-access",
            params={"staff_id": str(i), "reason": "console_stream"},
            headers=op.headers,
        )
        assert [e["id"] for e in r.json()["entries"]] == [entry["id"]]
    r = await client.get(
        "/v1/admin/location-access", params={"staff_id": str(readers[0])}, headers=op.headers
    )
    assert [e["reason"] for e in r.json()["entries"]] == ["console_detail", "console_stream"]
    r = await client.get(
        "/v1/admin/location-access", params={"staff_id": str(op.id)}, headers=op.headers
    )
    assert r.json()["entries"] == []


async def test_the_access_log_refuses_update_and_delete_in_the_database(client, world, pool):
    await client.get(
        f"/v1/console/incidents/{world['incident']}", headers=world["dispatcher"].headers
    )
    assert await pool.fetchval("SELECT count(*) FROM location_access") == 1
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute("UPDATE location_access SET reason = 'nothing to see'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute("DELETE FROM location_access")
    # Nor by deleting the incident it points at: the record outlives it (no cascade).
    await pool.execute("DELETE FROM incident WHERE id = $1", world["incident"])
    assert await pool.fetchrow("SELECT incident_id, reason FROM location_access") == (
        world["incident"],
        "console_detail",
    )


async def test_only_operators_reach_the_admin_endpoints(client, world):
    for creds in (world["dispatcher"], world["member"]):
        r = await client.get("/v1/admin/location-access", headers=creds.headers)
        assert r.status_code in (401, 403)
    r = await client.get("/v1/admin/location-access")
    assert r.status_code == 401


async def test_security_events_show_rejected_device_signatures(client, world):
    device = world["device"]
    r = await send_signal(client, device, {"type": "heartbeat"}, secret="0" * 64)
    assert r.status_code == 401
    r = await client.get(
        "/v1/admin/security-events",
        params={"device_id": str(device.id)},
        headers=world["operator"].headers,
    )
    events = r.json()["events"]
    assert [e["kind"] for e in events] == ["device_bad_signature"]
    assert events[0]["source_ip"] is not None
    none = await client.get(
        "/v1/admin/security-events",
        params={"kind": "wrong_cancel_pin"},
        headers=world["operator"].headers,
    )
    assert none.json()["events"] == []


async def test_device_list_shows_health_and_offline_buttons_first(client, world, pool, make_place):
    op = world["operator"]
    healthy = world["device"]
    r = await send_signal(client, healthy, {"type": "heartbeat", "battery_pct": 77})
    assert r.status_code == 200
    silent = await make_device(pool, await make_place("CU A", IN_A[0], IN_A[1] + 0.001))
    await pool.execute(
        "UPDATE device SET last_heartbeat_at = now() - interval '2 hours',"
        " created_at = now() - interval '3 days' WHERE id = $1",
        silent.id,
    )
    r = await client.get("/v1/admin/devices", headers=op.headers)
    assert r.status_code == 200, r.text
    devices = r.json()["devices"]
    assert [d["id"] for d in devices] == [str(silent.id), str(healthy.id)]
    assert devices[0]["health"]["offline"] is True
    assert devices[1]["health"]["offline"] is False
    assert devices[1]["health"]["battery_pct"] == 77
    assert devices[1]["district"] == {"code": "11110", "name": "District A"}
    assert healthy.secret not in r.text and silent.secret not in r.text
    only_offline = await client.get(
        "/v1/admin/devices", params={"offline": "true"}, headers=op.headers
    )
    assert [d["id"] for d in only_offline.json()["devices"]] == [str(silent.id)]
    one = await client.get(f"/v1/admin/devices/{healthy.id}", headers=op.headers)
    assert one.json()["health"]["last_heartbeat_at"] is not None
    missing = await client.get(f"/v1/admin/devices/{uuid.uuid4()}", headers=op.headers)
    assert missing.status_code == 404


async def test_disable_enable_and_rotate_a_button_from_the_api(client, world, pool):
    op, device = world["operator"], world["device"]
    r = await client.post(f"/v1/admin/devices/{device.id}/disable", headers=op.headers)
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert (await send_signal(client, device, {"type": "heartbeat"})).status_code == 401
    r = await client.post(f"/v1/admin/devices/{device.id}/enable", headers=op.headers)
    assert r.json()["enabled"] is True
    assert (await send_signal(client, device, {"type": "heartbeat"})).status_code == 200

    r = await client.post(
        f"/v1/admin/devices/{device.id}/rotate-secret",
        json={"grace_seconds": 600},
        headers=op.headers,
    )
    assert r.status_code == 200, r.text
    new_secret = r.json()["secret"]
    assert new_secret != device.secret and r.json()["previous_secret_valid_until"]
    # No downtime: both secrets verify during the grace period.
    assert (await send_signal(client, device, {"type": "heartbeat"})).status_code == 200
    ok = await send_signal(client, device, {"type": "heartbeat"}, secret=new_secret)
    assert ok.status_code == 200
    # A stolen secret: rotate with no grace and the old one is refused at once.
    r = await client.post(
        f"/v1/admin/devices/{device.id}/rotate-secret",
        json={"grace_seconds": 0},
        headers=op.headers,
    )
    newest = r.json()["secret"]
    assert r.json()["previous_secret_valid_until"] is None
    bad = await send_signal(client, device, {"type": "heartbeat"}, secret=new_secret)
    assert bad.status_code == 401
    good = await send_signal(client, device, {"type": "heartbeat"}, secret=newest)
    assert good.status_code == 200
    # Every operator action is audited, with who did it; the secret is never in the log.
    audit = await pool.fetch(
        "SELECT kind, detail FROM security_event WHERE kind LIKE 'admin_%' ORDER BY id"
    )
    assert [a["kind"] for a in audit] == [
        "admin_device_disabled",
        "admin_device_enabled",
        "admin_device_secret_rotated",
        "admin_device_secret_rotated",
    ]
    assert {a["detail"]["operator_id"] for a in audit} == {str(op.id)}
    assert newest not in str([dict(a) for a in audit])
    r = await client.post(
        f"/v1/admin/devices/{uuid.uuid4()}/rotate-secret", json={}, headers=op.headers
    )
    assert r.status_code == 404


async def test_revoking_a_staff_members_sessions_locks_them_out(client, world):
    disp, op = world["dispatcher"], world["operator"]
    assert (await client.get("/v1/console/incidents", headers=disp.headers)).status_code == 200
    r = await client.post(f"/v1/admin/staff/{disp.id}/revoke-tokens", headers=op.headers)
    assert r.status_code == 200 and r.json() == {"revoked": 1}
    assert (await client.get("/v1/console/incidents", headers=disp.headers)).status_code == 401
    r = await client.post(f"/v1/admin/staff/{uuid.uuid4()}/revoke-tokens", headers=op.headers)
    assert r.status_code == 404


async def test_revoking_a_lost_phones_token(client, world):
    member, op = world["member"], world["operator"]
    view = f"/v1/alerts/{world['incident']}"
    assert (await client.get(view, headers=member.headers)).status_code == 200
    r = await client.post(f"/v1/admin/members/{member.id}/revoke-tokens", headers=op.headers)
    assert r.json() == {"revoked": 1}
    assert (await client.get(view, headers=member.headers)).status_code == 401
    r = await client.post(f"/v1/admin/members/{uuid.uuid4()}/revoke-tokens", headers=op.headers)
    assert r.status_code == 404
